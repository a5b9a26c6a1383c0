"""Pointer for `locust -f locustfiles/ingest.py`: the scenario lives in generator/locustfiles/ingest.py."""

from generator.locustfiles.ingest import Ingester, Shape

__all__ = ["Ingester", "Shape"]
