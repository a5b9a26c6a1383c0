"""Locust users for the two scenarios (journeys, ingest) and the profile's load shape.

Every task sends exactly one request: the user keeps its place in a journey or a schedule
between tasks, and `wait_time` is the think time (or the open model's pause) before the next.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from gevent import GreenletExit
from locust import LoadTestShape, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.user.task import LOCUST_STATE_STOPPING

from generator.events.wire import LIBRARY_VERSION
from generator.load.counters import Counters
from generator.load.journeys import Journey, JourneyStep, JourneyStepKind
from generator.load.plan import READY_WAIT_S
from generator.load.process_state import ProcessState
from generator.load.shapes import users_at
from generator.redaction import redact

__all__ = ["IngestClient", "JourneyGuest", "ProfileShape"]

# A zero wait makes a user look idle to Locust's stop, which then kills it mid-request; pauses
# shorter than this are not waited for, the task goes straight on.
_MIN_WAIT = 0.001
_JSON = {"Content-Type": "application/json", "X-Library-Version": LIBRARY_VERSION}
_NDJSON = {"Content-Type": "application/x-ndjson"}
_BROWSER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _StationUser(FastHttpUser):
    abstract = True

    def __init__(self, environment: Environment) -> None:
        self.state = ProcessState.of(environment)
        # Set before FastHttpUser builds its client, which reads them.
        self.network_timeout = self.state.plan.timeout
        self.connection_timeout = self.state.plan.timeout
        super().__init__(environment)
        self.serial = self.state.next_serial()


class JourneyGuest(_StationUser):
    """A guest living the model's journeys: browser create, then its events with think times."""

    abstract = True
    cache = "journeys"  # the ProcessState cache its process warms up before the run

    def on_start(self) -> None:
        self.guests = self.state.journeys.sequence(self.serial)
        self._delay = 0.0
        self._begin()

    def wait_time(self) -> float:
        return self._delay

    def _begin(self) -> None:
        journey = next(self.guests)
        while not journey.events:  # a guest with no events in the window has nothing to send
            journey = next(self.guests)
        self.journey: Journey = journey
        self.position = 0
        self.browser_ids: list[str] = []
        self.state.counters.journeys += 1

    @task
    def walk(self) -> None:
        """Send the journey's next steps, up to the next think time worth waiting for."""
        while True:
            step = self.journey.steps[self.position]
            ok = (
                self._create_browser(step)
                if step.kind is JourneyStepKind.BROWSER
                else self._send(step)
            )
            self.position += 1
            if not ok or self.position >= len(self.journey.steps):
                # A journey whose browser could not be made cannot go on: the next guest.
                self._begin()
            self._delay = self.journey.steps[self.position].delay
            if self._delay >= _MIN_WAIT or self._state == LOCUST_STATE_STOPPING:
                return

    def _create_browser(self, step: JourneyStep) -> bool:
        with self.client.get(step.path, name=step.name, catch_response=True) as response:
            if not 200 <= response.status_code < 300:
                response.failure(_refusal("browser create", response))
                return False
            try:
                ref = orjson.loads(response.content or b"")["ref"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                response.failure("garbage answer to browser create (no JSON `ref`)")
                return False
            if not isinstance(ref, str) or not _BROWSER_ID.match(ref):
                response.failure("garbage answer to browser create (odd `ref`)")
                return False
            self.browser_ids.append(ref)
            return True

    def _send(self, step: JourneyStep) -> bool:
        browser_id = self.browser_ids[min(step.browser, len(self.browser_ids) - 1)]
        counters = self.state.counters
        counters.events_sent += 1
        # The hot path, kept lean: no idempotency key (the SDK sends none and a load test never
        # retries) and no catch_response (Locust fails 4xx, 5xx and no answer by itself).
        try:
            response = self.client.post(
                step.path,
                data=step.body(browser_id),  # type: ignore[arg-type]  # bytes are sent as they are
                headers=_JSON,
                name=step.name,
            )
        except GreenletExit:
            counters.events_cut += 1  # the end of the run cut this request off: outcome unknown
            raise
        if 200 <= response.status_code < 300:
            if step.kind is JourneyStepKind.FLOW and _flow_not_run(response.content):
                counters.flows_not_run += 1  # answered, but nothing ran: no TRACKING stored
            else:
                counters.events_acknowledged += 1
        return True


@contextmanager
def _cut_counted(counters: Counters, events: int) -> Iterator[None]:
    """Count the events of a request the end of the run cut off (sent, never answered)."""
    try:
        yield
    except GreenletExit:
        counters.events_cut += events
        raise


def _refusal(name: str, response: Any) -> str:
    if response.status_code:
        return f"{name} answered {response.status_code}"
    error = getattr(response, "error", None)
    if error is None:
        return f"{name}: no answer"
    # The exception's text repeats the URL; the status line and the error type say enough.
    return f"{name}: no answer ({type(error).__name__}: {redact(str(error)).splitlines()[0][:120]})"


def _flow_not_run(content: bytes | None) -> bool:
    """A callFlows answer saying the flow did not run (guest outside the traffic allocation):
    `{"variant": null, "reason": ...}` from the embedded server."""
    if not content or b'"reason"' not in content:
        return False
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    return isinstance(answer, dict) and answer.get("variant", "") is None


class IngestClient(_StationUser):
    """Stored-form events posted to the ingestion URL, one per request or as NDJSON batches;
    with `--rate`, at a fixed arrival rate (open model) with missed schedules counted."""

    abstract = True
    cache = "lines"

    def on_start(self) -> None:
        self.guests = self.state.lines.sequence(self.serial)
        self.buffer: list[bytes] = []
        self.batch = self.state.batch_size
        rate = self.state.plan.rate
        self.interval = 0.0
        self.due = time.monotonic()
        if rate:
            # Each of the peak users keeps its own share of the arrivals, staggered.
            self.interval = self.batch * self.state.spec.peak_users / rate
            self.due += self.interval * (self.serial % self.state.stride) / self.state.stride

    def wait_time(self) -> float:
        return max(_MIN_WAIT, self.due - time.monotonic()) if self.interval else _MIN_WAIT

    def _parcel(self) -> list[bytes]:
        while len(self.buffer) < self.batch:
            self.buffer.extend(next(self.guests))
        parcel, self.buffer = self.buffer[: self.batch], self.buffer[self.batch :]
        return parcel

    @task
    def post(self) -> None:
        """Post parcels back to back, or on schedule, until a pause is due or the run stops."""
        while True:
            self._post()
            if self._state == LOCUST_STATE_STOPPING:
                return
            if self.interval and self.due - time.monotonic() >= _MIN_WAIT:
                return

    def _post(self) -> None:
        parcel = self._parcel()
        counters = self.state.counters
        counters.events_sent += len(parcel)
        body, headers = (parcel[0], _JSON) if self.batch == 1 else (b"\n".join(parcel), _NDJSON)
        path = self.state.plan.ingest_path
        with (
            _cut_counted(counters, len(parcel)),
            self.client.post(
                path,
                data=body,  # type: ignore[arg-type]  # geventhttpclient sends bytes as they are
                headers=headers,
                name="ingest",
                catch_response=True,
            ) as response,
        ):
            self._count(response, len(parcel))
        if self.interval:
            self.due += self.interval
            late = time.monotonic() - self.due
            if late > self.interval:
                missed = math.floor(late / self.interval)
                counters.missed_schedules += missed
                self.due += missed * self.interval

    def _count(self, response: Any, events: int) -> None:
        if not 200 <= response.status_code < 300:
            response.failure(_refusal("ingest", response))
            return
        try:
            answer = orjson.loads(response.content or b"")
            accepted = int(answer["accepted"])
            rejected = len(answer.get("rejected") or ())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            response.failure("garbage answer to ingest (no JSON `accepted`)")
            return
        counters = self.state.counters
        counters.events_acknowledged += accepted
        counters.events_rejected += rejected
        if rejected:
            response.failure(f"ingest rejected {rejected} of {events} events")
        else:
            response.success()


class ProfileShape(LoadTestShape):
    """The profile's `load:` shape; `tick()` depends only on the elapsed run time.

    In distributed mode the run's clock starts once every worker has its first block of guests
    ready (or after `READY_WAIT_S`): until then the shape asks for no users.
    """

    abstract = True
    _started = False

    def tick(self) -> tuple[int, float] | None:
        if not self._started:
            assert self.runner is not None, "Locust sets the runner before the first tick"
            state = ProcessState.of(self.runner.environment)
            if not state.workers_ready() and self.get_run_time() < READY_WAIT_S:
                return 0, state.spec.spawn_rate
            self._started = True
            self.reset_time()
        return self.at(self.get_run_time())

    def at(self, elapsed: float) -> tuple[int, float] | None:
        assert self.runner is not None, "Locust sets the runner before the first tick"
        return users_at(ProcessState.of(self.runner.environment).spec, elapsed)
