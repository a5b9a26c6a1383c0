"""What one Locust process holds for a run (plan, profile, stocks, tally) and its event hooks."""

from __future__ import annotations

import itertools
import sys
import weakref
from collections.abc import Callable
from typing import Any

import gevent
from gevent.lock import Semaphore
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from generator.keys import redact
from generator.load.journeys import Journey
from generator.load.kitchen import Kitchen, recipe
from generator.load.plan import LoadPlan, add_arguments
from generator.load.shapes import ShapeSpec
from generator.load.stock import Stock
from generator.load.tally import Tally, merge_tallies
from generator.profile import Profile, load_profile

__all__ = ["Station", "install"]

# A think time never exceeds this: a day-long gap between sessions, scaled, is still too long
# for a load test; the session on the target simply times out meanwhile.
MAX_THINK_SECONDS = 5.0
_READY = "cdpsim_ready"

_stations: weakref.WeakKeyDictionary[Environment, Station] = weakref.WeakKeyDictionary()


class Station:
    """Per-process state shared by that process's users; made on first use."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.plan = LoadPlan.from_options(environment.parsed_options)
        self.profile: Profile = load_profile(self.plan.profile)
        load = self.profile.load
        self.seed = self.plan.seed if self.plan.seed is not None else self.profile.seed
        self.spec = ShapeSpec.from_profile(
            self.profile,
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
        self.stride = -(-self.spec.peak_users // max(1, self.plan.workers))
        self.tally = Tally()
        self._serials = itertools.count()
        self._journeys: Stock[Journey] | None = None
        self._lines: Stock[list[bytes]] | None = None
        self.kitchens: list[Kitchen] = []
        self.ready_workers: set[int] = set()
        self._making = Semaphore()

    @classmethod
    def of(cls, environment: Environment) -> Station:
        station = _stations.get(environment)
        if station is None:
            station = _stations[environment] = cls(environment)
        return station

    def workers_ready(self) -> bool:
        """On a master: every expected worker has its first block ready (others: always)."""
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return True
        expected = getattr(self.environment.parsed_options, "expect_workers", 1) or 1
        return len(self.ready_workers) >= expected

    def next_serial(self) -> int:
        return next(self._serials)

    @property
    def journeys(self) -> Stock[Journey]:
        # Starting a kitchen yields to other greenlets: the lock keeps it to one kitchen.
        with self._making:
            if self._journeys is None:
                self._journeys = self._stock("journeys")
        return self._journeys

    @property
    def lines(self) -> Stock[list[bytes]]:
        """Each guest's stored events, one serialised JSON line per event."""
        with self._making:
            if self._lines is None:
                self._lines = self._stock("lines")
        return self._lines

    def _stock(self, name: str) -> Stock[Any]:
        scale, think = self.think_time_scale, MAX_THINK_SECONDS
        _, unpack = recipe(name, self.profile, think_time_scale=scale, max_think=think)
        kitchen = Kitchen(self.plan.profile, name, think_time_scale=scale, max_think=think)
        self.kitchens.append(kitchen)
        return Stock(
            kitchen.order,
            unpack,
            root_seed=self.seed,
            worker=self.worker,
            stride=self.stride,
            background=lambda build: gevent.spawn(build).get,
        )

    def close(self) -> None:
        for kitchen in self.kitchens:
            kitchen.close()


def install() -> None:
    """Hook the load plan's options and the tally into Locust; call once from a locustfile."""
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(_on_init)
    events.quitting.add_listener(_on_quitting)


def _on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _gather_reports(environment)
        return  # the master sends nothing; its workers keep the tallies

    tallies: list[Tally] = []  # the station's tally, looked up once: this runs per request

    def tally() -> Tally:
        if not tallies:
            tallies.append(Station.of(environment).tally)
        return tallies[0]

    def on_request(
        response_time: float,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float = 0.0,
        **_: Any,
    ) -> None:
        status = getattr(response, "status_code", 0) or 0
        error = None if exception is None else _error_text(exception, status)
        tally().record(
            status=status, response_time_ms=response_time, start_s=start_time, error=error
        )

    environment.events.request.add_listener(on_request)

    def warm(**_: Any) -> None:
        # The first block of guests is made before any user starts, so the run's first
        # seconds measure the target, not the model.
        if not getattr(environment.parsed_options, "cdpsim_profile", None):
            return
        station = Station.of(environment)
        for user_class in environment.user_classes:
            stock = getattr(user_class, "stock", None)
            if stock is not None:
                getattr(station, stock).warm()

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
        warm()


# Workers on other machines cannot leave their tally files where `cdpsim load` looks, so every
# worker also sends its whole tally with Locust's periodic report, and the master keeps the
# latest one per worker and merges them when it quits (tally-master-*.json).
_REPORT_KEY = "cdpsim_tally"
_reports: weakref.WeakKeyDictionary[Environment, dict[str, str]] = weakref.WeakKeyDictionary()


def _report(environment: Environment) -> Callable[..., None]:
    def on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        station = _stations.get(environment)
        if station is not None:
            data[_REPORT_KEY] = station.tally.to_json().decode()

    return on_report


def _gather_reports(environment: Environment) -> None:
    latest = _reports.setdefault(environment, {})

    def on_ready(msg: Any, **_: Any) -> None:
        Station.of(environment).ready_workers.add(int(msg.data["index"]))

    assert environment.runner is not None
    environment.runner.register_message(_READY, on_ready)

    def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if _REPORT_KEY in data:
            latest[client_id] = data[_REPORT_KEY]

    environment.events.worker_report.add_listener(on_worker_report)


def _on_quitting(environment: Environment, **_: Any) -> None:
    station = _stations.get(environment)
    if station is not None:
        station.close()
    if station is None or station.plan.run_dir is None or not station.plan.run_dir.is_dir():
        return  # (a worker on another machine does not have the master's run directory)
    role = "worker"
    if isinstance(environment.runner, MasterRunner):
        role = "master"
        reports = _reports.get(environment, {}).values()
        station.tally = merge_tallies([Tally.from_json(r.encode()) for r in reports])
    try:
        station.tally.write(station.plan.run_dir, role)
    except OSError as exc:
        print(f"cdpsim: cannot write the tally to {station.plan.run_dir}: {exc}", file=sys.stderr)


def _error_text(exception: BaseException, status: int) -> str:
    text = redact(str(exception) or type(exception).__name__)
    text = text.splitlines()[0][:160]
    return f"{status}: {text}" if status else text
