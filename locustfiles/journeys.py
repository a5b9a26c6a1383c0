"""Pointer for `locust -f locustfiles/journeys.py`: the scenario is generator/locustfiles/."""

from generator.locustfiles.journeys import Arrivals, Guest, Shape

__all__ = ["Arrivals", "Guest", "Shape"]
