"""Locust users for the two scenarios (journeys, ingest) and the profile's load shape.

Every task sends exactly one request: the user keeps its place in a journey or a schedule
between tasks, and `wait_time` is the think time (or the open model's pause) before the next.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import numpy as np
import orjson
from gevent import GreenletExit
from gevent.pool import Pool
from locust import LoadTestShape, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.user.task import LOCUST_STATE_STOPPING

from generator.events.wire import LIBRARY_VERSION
from generator.fault_injection import (
    FAULT_HEADER,
    Fault,
    FaultInjector,
    render_label,
    spoil_line,
)
from generator.load.counters import Counters
from generator.load.guest_cache import GuestSequence, derive_seed
from generator.load.journeys import Journey, JourneyStep, JourneyStepKind
from generator.load.options import READY_WAIT_S
from generator.load.process_state import ProcessState
from generator.load.shapes import level_at, users_at
from generator.redaction import redact

__all__ = ["ArrivingGuests", "IngestClient", "JourneyGuest", "ProfileShape"]

# An arrival started later than this after it was due counts as a late start.
LATE_START_S = 0.1
# The dispatcher looks at the clock at least this often (so a stop is seen soon).
_TICK_S = 0.05

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
        self.concurrency = self.state.plan.connections  # connections its client pools
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
        return create_browser(self.client, step, self.browser_ids)

    def _send(self, step: JourneyStep) -> bool:
        send_event(self.client, self.state.counters, step, self.browser_ids)
        return True


def create_browser(
    client: Any, step: JourneyStep, browser_ids: list[str], context: dict[str, Any] | None = None
) -> bool:
    """Browser create; its ref goes into `browser_ids`. False when the guest cannot go on."""
    with client.get(
        step.path, name=step.name, catch_response=True, context=context or {}
    ) as response:
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
        browser_ids.append(ref)
        return True


def send_event(
    client: Any,
    counters: Counters,
    step: JourneyStep,
    browser_ids: list[str],
    context: dict[str, Any] | None = None,
) -> None:
    """One event or callFlows of a journey, counted."""
    browser_id = browser_ids[min(step.browser, len(browser_ids) - 1)]
    counters.events_sent += 1
    # The hot path, kept lean: no idempotency key (the SDK sends none and a load test never
    # retries) and no catch_response (Locust fails 4xx, 5xx and no answer by itself).
    try:
        response = client.post(
            step.path,
            data=step.body(browser_id),
            headers=_JSON,
            name=step.name,
            context=context or {},
        )
    except GreenletExit:
        counters.events_cut += 1  # the end of the run cut this request off: outcome unknown
        raise
    if 200 <= response.status_code < 300:
        if step.kind is JourneyStepKind.FLOW and _flow_not_run(response.content):
            counters.flows_not_run += 1  # answered, but nothing ran: no TRACKING stored
        else:
            counters.events_acknowledged += 1


class ArrivingGuests(_StationUser):
    """The open model: one dispatcher per Locust process starts each guest when its arrival is
    due (`--arrivals` per second at the shape's peak, shaped like the load shape), whether or
    not earlier guests are done. Each guest lives its journey in a greenlet of its own, with
    the model's think times, on connections the process's guests share. An arrival that cannot
    start on time (no room under `--max-guests`, or no guest made yet) starts as soon as it
    can and counts as a late start; every request is also timed from when it was due."""

    abstract = True
    cache = "journeys"
    open_model = True  # the shape runs it (and not the closed model's users) with --arrivals

    def on_start(self) -> None:
        # One client for every guest in flight: one cookie jar would hand one guest's cookies
        # to all the others (a guest's browser id travels in its bodies, as the SDK sends it),
        # and would be searched and filled on every request for nothing.
        self.client.client.cookiejar = None
        self.guests = self.state.journeys.sequence(self.serial)
        self.live = Pool(self.state.plan.max_guests)
        plan = self.state.plan
        assert plan.arrivals is not None
        self.rate = plan.arrivals / max(1, plan.workers)
        self.started = self.due = time.time()  # `due`: the next arrival not yet counted
        self.waiting = 0
        self.closed = False

    def wait_time(self) -> float:
        return _MIN_WAIT

    def on_stop(self) -> None:
        # The end of the run: arrivals that came due but could not start are late starts
        # too; guests in the middle of a request are cut (and counted so).
        if not self.closed:
            self.closed = True
            counters = self.state.counters
            counters.late_starts += self.waiting
            self.waiting = 0
            now = time.time()
            while (rate := self._rate_at(self.due)) is not None and self.due <= now:
                if rate > 0:
                    counters.guests_due += 1
                    counters.late_starts += 1
                self.due += 1 / rate if rate > 0 else _TICK_S
        self.live.kill(block=True, timeout=self.state.plan.timeout)

    def _rate_at(self, due: float) -> float | None:
        level = level_at(self.state.spec, due - self.started)
        return None if level is None else self.rate * level

    @task
    def dispatch(self) -> None:
        counters = self.state.counters
        while self._state != LOCUST_STATE_STOPPING:
            due = self.due
            rate = self._rate_at(due)
            if rate is None:
                gevent.sleep(_TICK_S)  # the run is over; the shape stops the users
                continue
            now = time.time()
            if due > now:
                gevent.sleep(min(due - now, _TICK_S))
                continue
            self.due = due + (1 / rate if rate > 0 else _TICK_S)
            if rate <= 0:
                continue
            counters.guests_due += 1
            self.waiting = 1  # due, not yet started
            while self.live.full() and self._state != LOCUST_STATE_STOPPING:
                self.live.wait_available(timeout=_TICK_S)
            if self._state == LOCUST_STATE_STOPPING:
                break
            journey = _next_journey(self.guests)
            self.waiting = 0
            if time.time() - due > LATE_START_S:
                counters.late_starts += 1
            self.live.spawn(self._live, journey, due)
            counters.peak_guests = max(counters.peak_guests, len(self.live))
        self.on_stop()

    def _live(self, journey: Journey, due: float) -> None:
        """One guest, on the model's timeline from its arrival: each request is due its think
        time after the one before was due (sent at once when that has passed)."""
        counters = self.state.counters
        counters.journeys += 1
        browser_ids: list[str] = []
        for step in journey.steps:
            due += step.delay
            wait = due - time.time()
            if wait > 0:
                gevent.sleep(wait)
            context = {"due": due}
            if step.kind is JourneyStepKind.BROWSER:
                if not create_browser(self.client, step, browser_ids, context):
                    return
            else:
                send_event(self.client, counters, step, browser_ids, context)


def _next_journey(guests: GuestSequence[Journey]) -> Journey:
    journey = next(guests)
    while not journey.events:  # a guest with no events in the window has nothing to send
        journey = next(guests)
    return journey


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
    with `--rate`, at a fixed arrival rate (open model) with missed schedules counted; with
    `--faults`, labelled dirty traffic (see `generator.fault_injection`)."""

    abstract = True
    cache = "lines"

    def on_start(self) -> None:
        state = self.state
        self.guests = state.lines.sequence(self.serial)
        self.guest_count = 0
        self.buffer: list[tuple[bytes, Fault | None]] = []
        self.batch = state.batch_size
        rate = state.plan.rate
        self.interval = 0.0
        self.injector: FaultInjector[bytes] | None = None
        self.stream = f"{state.worker}-{self.serial}"
        if state.plan.faults is not None:
            rng = np.random.default_rng(derive_seed(state.seed, state.worker, self.serial, 0xFA))
            self.injector = FaultInjector(state.plan.faults, rng)
        if rate:
            # Each of the peak users keeps its own share of the arrivals, staggered, on one
            # schedule from the start of the run: a user that starts late has missed some.
            users = state.spec.peak_users
            self.interval = self.batch * users / rate
            if state.first_user_at is None:
                state.first_user_at = time.monotonic()
            first = state.first_user_at
            self.due = first + self.interval * (self.serial % users) / users
        else:
            self.due = time.monotonic()

    def wait_time(self) -> float:
        return max(_MIN_WAIT, self.due - time.monotonic()) if self.interval else _MIN_WAIT

    def _parcel(self) -> list[tuple[bytes, Fault | None]]:
        while len(self.buffer) < self.batch:
            lines = next(self.guests)
            self.guest_count += 1
            if self.injector is None:
                self.buffer.extend((line, None) for line in lines)
                continue
            for line in lines:
                deliveries = self.injector.push(line, self.guest_count, _ref_of(line))
                faults = iter(self.injector.take_faults())  # one per delivery with a kind
                for d in deliveries:
                    if d.kind is None:
                        self.buffer.append((d.item, None))
                    else:
                        self.buffer.append((spoil_line(d.item, d.kind, d.detail), next(faults)))
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
        faults = [(i, f) for i, (_, f) in enumerate(parcel, start=1) if f is not None]
        labels = [(i, f.kind) for i, f in faults]
        extras = {i for i, kind in labels if kind in ("dup", "dup-changed", "malformed")}
        clean = len(parcel) - len(extras)
        counters.events_sent += clean
        lines = [line for line, _ in parcel]
        body, headers = (lines[0], _JSON) if self.batch == 1 else (b"\n".join(lines), _NDJSON)
        if labels:
            headers = {**headers, FAULT_HEADER: render_label(labels)}
            for _, kind in labels:
                counters.faults_sent[kind] += 1
            self._record_faults([f for _, f in faults])
        context = {"due": _epoch(self.due)} if self.interval else {}
        path = self.state.plan.ingest_path
        with (
            _cut_counted(counters, clean),
            self.client.post(
                path,
                data=body,  # type: ignore[arg-type]  # geventhttpclient sends bytes as they are
                headers=headers,
                name="ingest",
                catch_response=True,
                context=context,
            ) as response,
        ):
            self._count(response, parcel, labels)
        if self.interval:
            counters.scheduled += 1
            self.due += self.interval
            late = time.monotonic() - self.due
            if late > self.interval:
                missed = math.floor(late / self.interval)
                counters.missed_schedules += missed
                counters.scheduled += missed
                self.due += missed * self.interval

    def _record_faults(self, faults: list[Fault]) -> None:
        """The parcel's faults, as sent, into this process's faults file."""
        log = self.state.fault_log
        if log is not None:
            log.write(b"".join(f.to_json(stream=self.stream) + b"\n" for f in faults))

    def _count(
        self, response: Any, parcel: list[tuple[bytes, Fault | None]], labels: list[tuple[int, str]]
    ) -> None:
        malformed = {i for i, kind in labels if kind == "malformed"}
        copies = sum(1 for _, kind in labels if kind in ("dup", "dup-changed"))
        counters = self.state.counters
        try:
            answer = orjson.loads(response.content or b"")
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        rejected_lines = {
            r.get("line") for r in answer.get("rejected") or () if isinstance(r, dict)
        }
        if response.status_code == 400 and malformed and rejected_lines == malformed:
            # Every line was a labelled malformed one, and each was refused: as it should be.
            counters.fault_rejections += len(malformed)
            response.success()
            return
        if not 200 <= response.status_code < 300:
            response.failure(_refusal("ingest", response))
            return
        try:
            accepted = int(answer["accepted"])
            duplicates = int(answer.get("duplicates") or 0)
        except (KeyError, TypeError, ValueError):
            response.failure("garbage answer to ingest (no JSON `accepted`)")
            return
        counters.fault_rejections += len(rejected_lines & malformed)
        counters.fault_duplicates += min(copies, duplicates)
        counters.events_acknowledged += accepted - copies
        unexpected = rejected_lines - malformed
        counters.events_rejected += len(unexpected)
        if unexpected:
            response.failure(f"ingest rejected {len(unexpected)} of {len(parcel)} events")
        elif malformed - rejected_lines:
            response.failure(f"ingest accepted {len(malformed - rejected_lines)} malformed lines")
        else:
            response.success()


def _ref_of(line: bytes) -> str:
    # Stored lines start {"ref":"...": no need to parse the whole event for its ref.
    head = line[:60]
    start = head.find(b'"ref":"')
    if start < 0:
        return str(orjson.loads(line).get("ref", ""))
    start += 7
    return head[start : head.index(b'"', start)].decode()


def _epoch(monotonic_s: float) -> float:
    """A monotonic time as epoch seconds (Locust times requests by the wall clock)."""
    return time.time() - (time.monotonic() - monotonic_s)


class ProfileShape(LoadTestShape):
    """The profile's `load:` shape; `tick()` depends only on the elapsed run time.

    In distributed mode the run's clock starts once every worker has its first block of guests
    ready (or after `READY_WAIT_S`): until then the shape asks for no users.
    """

    abstract = True
    _started = False
    # The web UI shows its user count and spawn rate (filled in from the flags) and the shape
    # takes them as its peak; headless, the plan's numbers stand.
    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        if not self._started:
            assert self.runner is not None, "Locust sets the runner before the first tick"
            state = ProcessState.of(self.runner.environment)
            if state.interrupted:
                return None  # Ctrl-C before the start: end now, with the (empty) reports
            if not state.workers_ready() and self.get_run_time() < READY_WAIT_S:
                return 0, state.spec.spawn_rate
            self._started = True
            self.reset_time()
        return self.at(self.get_run_time())

    def at(self, elapsed: float) -> tuple[int, float] | None:
        assert self.runner is not None, "Locust sets the runner before the first tick"
        state = ProcessState.of(self.runner.environment)
        if state.interrupted:
            return None
        plan = state.plan
        open_model = plan.arrivals is not None
        environment = self.runner.environment
        classes = [c for c in environment.user_classes if getattr(c, "open_model", False)]
        if not open_model:
            classes = [c for c in environment.user_classes if c not in classes]
        if open_model:
            # The open model: one dispatcher user per process, started at once.
            if level_at(state.spec, elapsed) is None:
                return None
            wanted: tuple[int, float] | None = plan.workers, float(plan.workers)
        else:
            spec = state.spec
            options = environment.parsed_options
            if (
                options is not None
                and not getattr(options, "headless", True)
                and getattr(options, "num_users", None)
            ):
                spec = dataclasses.replace(
                    spec,
                    users=int(options.num_users),
                    spawn_rate=float(options.spawn_rate or spec.spawn_rate),
                )
            wanted = users_at(spec, elapsed)
            if wanted is not None and plan.rate:
                # A fixed rate holds from the first second: every sender starts at once.
                wanted = wanted[0], max(wanted[1], float(state.spec.peak_users))
        if wanted is None or len(classes) == len(environment.user_classes):
            return wanted
        return wanted[0], wanted[1], classes  # type: ignore[return-value]
