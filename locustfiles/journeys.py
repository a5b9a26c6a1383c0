"""Pointer for `locust -f locustfiles/journeys.py`: the scenario is generator/locustfiles/."""

from generator.locustfiles.journeys import Guest, Shape

__all__ = ["Guest", "Shape"]
