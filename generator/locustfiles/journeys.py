"""Locust scenario: guests living the model's journeys against a Stream API (`cdpsim load`)."""

from generator.load.process_state import install
from generator.load.users import ArrivingGuests, JourneyGuest, ProfileShape

install()


class Guest(JourneyGuest):
    """Browser create, the session's events in order with think times, callFlows on triggers."""


class Arrivals(ArrivingGuests):
    """With --arrivals (open model): starts each guest when due, each in a greenlet of its own."""


class Shape(ProfileShape):
    """The profile's `load:` shape (steady, step, spike or diurnal)."""


if __name__ == "__main__":
    # Debugging, one user in this process, stopped with Ctrl+C:
    # python -m generator.locustfiles.journeys --host http://127.0.0.1:8080 \
    #     --cdpsim-profile profiles/smoke.yaml
    from locust import run_single_user

    run_single_user(Guest)
