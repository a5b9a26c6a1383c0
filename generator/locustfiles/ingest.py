"""Locust scenario: stored-form events posted to an ingestion URL, one by one or as NDJSON."""

from generator.load.process_state import install
from generator.load.users import IngestClient, ProfileShape

install()


class Ingester(IngestClient):
    """Posts the generator's stored events (TRACKING and the rest) to `/v1/ingest`."""


class Shape(ProfileShape):
    """The profile's `load:` shape (steady, step, spike or diurnal)."""


if __name__ == "__main__":
    # Debugging, one user in this process, stopped with Ctrl+C:
    # python -m generator.locustfiles.ingest --host http://127.0.0.1:8080 \
    #     --cdpsim-profile profiles/smoke.yaml
    from locust import run_single_user

    run_single_user(Ingester)
