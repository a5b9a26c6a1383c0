"""Pointer for `locust -f locustfiles/ingest.py`: the scenario is generator/locustfiles/."""

from generator.locustfiles.ingest import Ingester, Shape

__all__ = ["Ingester", "Shape"]
