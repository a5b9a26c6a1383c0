"""Pointer for `locust -f locustfiles/journeys.py`: the scenario lives in generator/locustfiles/journeys.py."""

from generator.locustfiles.journeys import Guest, Shape

__all__ = ["Guest", "Shape"]
