"""What one Locust process holds for a run (plan, profile, caches, counters) and its event hooks."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import weakref
from collections.abc import Callable
from typing import Any, BinaryIO

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from generator.load.counters import (
    Counters,
    connection_failure,
    merge_counters,
    series_interval,
)
from generator.load.guest_cache import GuestCache
from generator.load.guest_simulator import GuestSimulator, codec_for
from generator.load.journeys import Journey
from generator.load.options import LoadOptions, add_arguments
from generator.load.shapes import ShapeSpec
from generator.profile import Profile, load_profile
from generator.redaction import redact

__all__ = ["ProcessState", "install"]

# A think time never exceeds this: a day-long gap between sessions, scaled, is still too long
# for a load test; the session on the target simply times out meanwhile.
MAX_THINK_SECONDS = 5.0
_READY = "cdpsim_ready"

_states: weakref.WeakKeyDictionary[Environment, ProcessState] = weakref.WeakKeyDictionary()


class ProcessState:
    """Per-process state shared by that process's users; made on first use."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.plan = LoadOptions.from_options(environment.parsed_options)
        self.profile: Profile = load_profile(self.plan.profile)
        load = self.profile.load
        self.seed = self.plan.seed if self.plan.seed is not None else self.profile.seed
        self.spec = ShapeSpec.from_profile(
            self.profile,
            shape=self.plan.shape,
            users=self.plan.users,
            spawn_rate=self.plan.spawn_rate,
            run_time=self.plan.run_time,
        )
        self.batch_size = self.plan.batch_size or load.batch_size
        self.think_time_scale = (
            self.plan.think_time_scale
            if self.plan.think_time_scale is not None
            else load.think_time_scale
        )
        runner = environment.runner
        self.worker = max(0, getattr(runner, "worker_index", 0) or 0)
        # Open model: one dispatcher user per process draws every guest of its sequence.
        users = 1 if self.plan.arrivals is not None else self.spec.peak_users
        self.stride = -(-users // max(1, self.plan.workers))
        self.counters = Counters(interval_s=series_interval(self.plan.interval, self.spec.run_time))
        self.warmed = Event()  # this process's first block of guests is ready
        self.interrupted = False  # a SIGINT came: the shape ends the run at its next tick
        self._serials = itertools.count()
        self._journeys: GuestCache[Journey] | None = None
        self._lines: GuestCache[list[bytes]] | None = None
        self.simulators: list[GuestSimulator] = []
        self.first_user_at: float | None = None  # monotonic time its first user started
        self._fault_log: BinaryIO | None = None
        self._no_fault_log = False
        self.ready_workers: set[int] = set()
        self._making = Semaphore()

    @classmethod
    def of(cls, environment: Environment) -> ProcessState:
        state = _states.get(environment)
        if state is None:
            state = _states[environment] = cls(environment)
        return state

    def workers_ready(self) -> bool:
        """Every process that sends has its first block ready (a master: its workers)."""
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return self.warmed.is_set()
        expected = getattr(self.environment.parsed_options, "expect_workers", 1) or 1
        return len(self.ready_workers) >= expected

    def next_serial(self) -> int:
        return next(self._serials)

    @property
    def journeys(self) -> GuestCache[Journey]:
        # Starting a simulator yields to other greenlets: the lock keeps it to one simulator.
        with self._making:
            if self._journeys is None:
                self._journeys = self._cache("journeys")
        return self._journeys

    @property
    def lines(self) -> GuestCache[list[bytes]]:
        """Each guest's stored events, one serialised JSON line per event."""
        with self._making:
            if self._lines is None:
                self._lines = self._cache("lines")
        return self._lines

    def _cache(self, name: str) -> GuestCache[Any]:
        scale, think = self.think_time_scale, MAX_THINK_SECONDS
        _, unpack = codec_for(name, self.profile, think_time_scale=scale, max_think=think)
        simulator = GuestSimulator(self.plan.profile, name, think_time_scale=scale, max_think=think)
        self.simulators.append(simulator)
        return GuestCache(
            simulator.order,
            unpack,
            root_seed=self.seed,
            worker=self.worker,
            stride=self.stride,
            background=lambda build: gevent.spawn(build).get,
        )

    @property
    def fault_log(self) -> BinaryIO | None:
        """This process's list of injected faults (`faults-PID.jsonl` in the run directory);
        None on a worker on another machine, which has no such directory (its counts still
        reach the master)."""
        if self._fault_log is None and not self._no_fault_log:
            run_dir = self.plan.run_dir
            if run_dir is None or not run_dir.is_dir():
                self._no_fault_log = True
                return None
            self._fault_log = open(run_dir / f"faults-{os.getpid()}.jsonl", "ab")  # noqa: SIM115
        return self._fault_log

    def close(self) -> None:
        for simulator in self.simulators:
            simulator.close()
        if self._fault_log is not None:
            self._fault_log.close()
            self._fault_log = None


def install() -> None:
    """Hook the load plan's options and the counters into Locust; call once from a locustfile."""
    # A Locust process is ours (started by `cdpsim load`, or `locust -f` on purpose): tuned
    # here like the generator's workers. Thousands of guests in flight allocate many small
    # objects that live for a request; the cyclic collector's default pace would scan them
    # all every few hundred requests.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(_on_init)
    events.quitting.add_listener(_on_quitting)
    _install_sigint()


def _install_sigint() -> None:
    """A SIGINT (Ctrl-C, or `cdpsim load` passing one on) is recorded, and the shape ends the
    run at its next tick, the way a run ends: users stop, Locust writes its HTML and CSVs and
    each process its counters. A KeyboardInterrupt instead would land wherever the process is
    (making the first guests, awaiting workers, the event loop) with a traceback and, before
    the test starts, no report. Locust is started with SIGINT ignored until this runs. The web
    UI keeps Locust's own Ctrl-C (it stops the UI, which then writes the HTML); a repeat while
    stopping (the terminal's and the parent's) is ignored there."""
    seen: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        seen.append(signum)
        states = list(_states.values())
        if not states:
            _pending_interrupt.append(True)  # before Locust made its environment
            return
        for state in states:
            state.interrupted = True
        web = any(
            not getattr(s.environment.parsed_options, "headless", True)
            and not isinstance(s.environment.runner, WorkerRunner)
            for s in states
        )
        if web and len(seen) == 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


_pending_interrupt: list[bool] = []


def _on_init(environment: Environment, **_: Any) -> None:
    if getattr(environment.parsed_options, "cdpsim_profile", None):
        state = ProcessState.of(environment)  # made now, so a SIGINT from here on is recorded
        state.interrupted = bool(_pending_interrupt)
    if isinstance(environment.runner, MasterRunner):
        _gather_reports(environment)
        return  # the master sends nothing; its workers keep the counter_sets

    counter_sets: list[Counters] = []  # the state's counters, looked up once: this runs per request

    def counters() -> Counters:
        if not counter_sets:
            counter_sets.append(ProcessState.of(environment).counters)
        return counter_sets[0]

    def on_request(
        response_time: float,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float = 0.0,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        status = getattr(response, "status_code", 0) or 0
        error = None if exception is None else _error_text(exception, status)
        no_answer = None
        if not status:
            no_answer = connection_failure(exception or getattr(response, "error", None))
        counters().record(
            status=status,
            response_time_ms=response_time,
            start_s=start_time,
            error=error,
            intended_s=context.get("due") if context else None,
            no_answer=no_answer,
        )

    environment.events.request.add_listener(on_request)

    def warm(**_: Any) -> None:
        # The first block of guests is made before any user starts, so the run's first
        # seconds measure the target, not the model. In a greenlet of its own: the shape
        # waits for it, and a Ctrl-C meanwhile ends the run cleanly, with its reports.
        if not getattr(environment.parsed_options, "cdpsim_profile", None):
            return
        state = ProcessState.of(environment)
        for user_class in environment.user_classes:
            cache = getattr(user_class, "cache", None)
            if cache is not None:
                getattr(state, cache).warm()
        state.warmed.set()

    def warm_once_indexed() -> None:
        # A worker learns its index (which seeds its guests) when the master acknowledges it,
        # just after it connects and before the test starts: warm up from then on.
        runner = environment.runner
        assert isinstance(runner, WorkerRunner)
        while runner.worker_index < 0:
            gevent.sleep(0.05)
        warm()
        runner.send_message(_READY, {"index": runner.worker_index})

    if isinstance(environment.runner, WorkerRunner):
        gevent.spawn(warm_once_indexed)
        environment.events.report_to_master.add_listener(_report(environment))
    else:
        gevent.spawn(warm)


# Workers on other machines cannot leave their counters files where `cdpsim load` looks, so every
# worker also sends its whole counters with Locust's periodic report, and the master keeps the
# latest one per worker and merges them when it quits (counters-master-*.json).
_REPORT_KEY = "cdpsim_tally"
_reports: weakref.WeakKeyDictionary[Environment, dict[str, str]] = weakref.WeakKeyDictionary()


def _report(environment: Environment) -> Callable[..., None]:
    def on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        state = _states.get(environment)
        if state is not None:
            data[_REPORT_KEY] = state.counters.to_json().decode()

    return on_report


def _gather_reports(environment: Environment) -> None:
    latest = _reports.setdefault(environment, {})

    def on_ready(msg: Any, **_: Any) -> None:
        ProcessState.of(environment).ready_workers.add(int(msg.data["index"]))

    assert environment.runner is not None
    environment.runner.register_message(_READY, on_ready)

    def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if _REPORT_KEY in data:
            latest[client_id] = data[_REPORT_KEY]

    environment.events.worker_report.add_listener(on_worker_report)


def _on_quitting(environment: Environment, **_: Any) -> None:
    state = _states.get(environment)
    if state is not None:
        state.close()
    if state is None or state.plan.run_dir is None or not state.plan.run_dir.is_dir():
        return  # (a worker on another machine does not have the master's run directory)
    role = "worker"
    if isinstance(environment.runner, MasterRunner):
        role = "master"
        reports = _reports.get(environment, {}).values()
        state.counters = merge_counters([Counters.from_json(r.encode()) for r in reports])
    try:
        state.counters.write(state.plan.run_dir, role)
    except OSError as exc:
        print(f"cdpsim: cannot write the counters to {state.plan.run_dir}: {exc}", file=sys.stderr)


def _error_text(exception: BaseException, status: int) -> str:
    text = redact(str(exception) or type(exception).__name__)
    text = text.splitlines()[0][:160]
    return f"{status}: {text}" if status else text
