"""Every option of a `cdpsim load` run, in one frozen dataclass: the command line's flags, the
arguments that carry the run to each Locust process, Locust's parser for them, and what those
processes read back are all made from the fields below (add a field here and nowhere else).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generator.errors import CdpsimError
from generator.fault_injection import FaultMix
from generator.load.summary import Slo

__all__ = [
    "READY_WAIT_S",
    "SCENARIOS",
    "SHAPES",
    "Flag",
    "LoadOptions",
    "add_arguments",
    "flags",
    "parse_duration",
]

# How long a master waits for its workers' first blocks of guests before starting regardless.
READY_WAIT_S = 120.0

Scenario = Literal["journeys", "ingest"]
SCENARIOS: tuple[Scenario, ...] = ("journeys", "ingest")
SHAPES = ("steady", "step", "spike", "diurnal")
_PREFIX = "--cdpsim-"


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m`, `1h30m` -> seconds."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(f"{text!r} is not a duration such as 60s, 5m or 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be more than 0")
    return seconds


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r}: use one of {', '.join(allowed)}")
        return text

    return parse


@dataclass(frozen=True, slots=True)
class Flag:
    """How one field of `LoadOptions` shows itself.

    `cli`: its command-line flag (None: set by `cdpsim load` itself, never typed). `locust`:
    carried to every Locust process as `--cdpsim-NAME`. `scenarios`: the scenarios it applies
    to; given with another, the command refuses it. `parse`/`show`: text to value and back,
    for values the command line types as text (durations, fault mixes); `show` is also how the
    value travels to Locust.
    """

    help: str
    cli: str | None = None
    locust: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    min: float | None = None
    max: float | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    show: Callable[[Any], str] = str
    argument: bool = False  # a positional argument (the profile), not an option


def _opt(default: Any, flag: Flag) -> Any:
    return field(default=default, metadata={"flag": flag})


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """What one run was asked for; `None` means the profile's `load:` value (or no limit)."""

    profile: Path = _opt(  # noqa: RUF009  (Path and FaultMix are immutable)
        Path(),
        Flag(
            "Profile YAML or bundled name (retail-ireland, smoke, multi-region).",
            argument=True,
            locust=True,
        ),
    )
    host: str | None = _opt(
        None, Flag("Target base URL. Default: start the embedded server.", cli="--host")
    )
    scenario: str = _opt(
        "journeys", Flag("journeys or ingest.", cli="--scenario", parse=_choice(*SCENARIOS))
    )
    shape: str | None = _opt(
        None,
        Flag(
            "Load shape: steady, step, spike or diurnal (the profile's). With --arrivals it "
            "shapes the arrival rate.",
            cli="--shape",
            locust=True,
            parse=_choice(*SHAPES),
        ),
    )
    users: int | None = _opt(
        None, Flag("Peak users, closed model (the profile's).", cli="--users", locust=True, min=1)
    )
    spawn_rate: float | None = _opt(
        None, Flag("Users started per second.", cli="--spawn-rate", locust=True, min=0.01)
    )
    run_time: float | None = _opt(
        None,
        Flag(
            "Run time, e.g. 60s, 5m, 1h30m (the profile's).",
            cli="--run-time",
            locust=True,
            parse=parse_duration,
            show=repr,
        ),
    )
    arrivals: float | None = _opt(
        None,
        Flag(
            "journeys, open model: guests arriving per second at the shape's peak; each starts "
            "when due, whether or not earlier guests are done.",
            cli="--arrivals",
            locust=True,
            scenarios=("journeys",),
            min=0.001,
            metavar="GUESTS_PER_S",
        ),
    )
    max_guests: int = _opt(
        20_000,
        Flag(
            "journeys, open model: guests in flight per Locust process at most; an arrival "
            "past it waits, and counts as a late start.",
            cli="--max-guests",
            locust=True,
            scenarios=("journeys",),
            min=1,
        ),
    )
    connections: int = _opt(
        200,
        Flag(
            "journeys, open model: HTTP connections per Locust process that the guests share.",
            cli="--connections",
            locust=True,
            scenarios=("journeys",),
            min=1,
        ),
    )
    rate: float | None = _opt(
        None,
        Flag(
            "ingest: fixed arrival rate, events/s from the first second (open model).",
            cli="--rate",
            locust=True,
            scenarios=("ingest",),
            min=0.001,
        ),
    )
    processes: int = _opt(
        1, Flag("Locust worker processes (a master and N workers).", cli="--processes", min=1)
    )
    report: Path | None = _opt(  # noqa: RUF009  (Path and FaultMix are immutable)
        None,
        Flag("Write Locust's HTML and CSVs, summary.json and the latency series here.", "--report"),
    )
    web: bool = _opt(False, Flag("Open Locust's web UI instead of running headless.", "--web"))
    web_port: int = _opt(
        8089, Flag("--web: the web UI's port on 127.0.0.1.", cli="--web-port", min=1, max=65535)
    )
    allow_remote: bool = _opt(
        False, Flag("Allow a --host that is not a loopback address.", cli="--allow-remote")
    )
    max_fail_ratio: float = _opt(
        0.01,
        Flag(
            "SLO: exit 1 when more than this share of requests fail (0.01 = 1%).",
            cli="--max-fail-ratio",
            min=0,
            max=1,
        ),
    )
    max_p95_ms: float | None = _opt(
        None, Flag("SLO: exit 1 above this p95 latency, ms.", cli="--max-p95-ms", min=0)
    )
    max_late_ratio: float = _opt(
        0.01,
        Flag(
            "journeys, open model: exit 1 when more than this share of guests started late.",
            cli="--max-late-ratio",
            scenarios=("journeys",),
            min=0,
            max=1,
        ),
    )
    batch_size: int | None = _opt(
        None,
        Flag(
            "ingest: events per request (NDJSON when > 1).",
            cli="--batch-size",
            locust=True,
            scenarios=("ingest",),
            min=1,
        ),
    )
    faults: FaultMix | None = _opt(  # noqa: RUF009  (Path and FaultMix are immutable)
        None,
        Flag(
            "ingest: labelled dirty traffic, e.g. dup=0.01,late=0.005,malformed=0.001,"
            "out-of-order=0.01 (kinds: " + ", ".join(FaultMix.KINDS) + "); each fault is "
            "listed in REPORT/faults.jsonl.",
            cli="--faults",
            locust=True,
            scenarios=("ingest",),
            parse=FaultMix.parse,
            metavar="KIND=SHARE,...",
        ),
    )
    seed: int | None = _opt(
        None, Flag("Root seed (the profile's).", cli="--seed", locust=True, min=0)
    )
    think_time_scale: float | None = _opt(
        None,
        Flag(
            "journeys: factor on the model's gaps (the profile's).",
            cli="--think-time-scale",
            locust=True,
            scenarios=("journeys",),
            min=0,
        ),
    )
    timeout: float = _opt(
        10.0, Flag("Request timeout, s.", cli="--timeout", locust=True, min=0.1, show=repr)
    )
    interval: float | None = _opt(
        None,
        Flag(
            "Seconds per row of the latency series (default: 1 s, longer for runs over 10 min).",
            cli="--interval",
            locust=True,
            min=0.1,
            show=repr,
        ),
    )
    remote_workers: int = _opt(
        0, Flag("Also await N workers from other machines.", cli="--remote-workers", min=0)
    )
    master_port: int = _opt(
        5557, Flag("Master port for remote workers.", cli="--master-port", min=1, max=65535)
    )
    # Set by `cdpsim load` for its Locust processes, never typed.
    ingest_path: str = _opt("/v1/ingest", Flag("ingestion URL path", locust=True))
    run_dir: Path | None = _opt(  # noqa: RUF009  (Path and FaultMix are immutable)
        None, Flag("where each Locust process leaves its counters", locust=True)
    )
    workers: int = _opt(1, Flag("Locust worker processes in all", locust=True))

    @property
    def slo(self) -> Slo:
        return Slo(
            max_fail_ratio=self.max_fail_ratio,
            max_p95_ms=self.max_p95_ms,
            max_late_ratio=self.max_late_ratio if self.arrivals is not None else None,
        )

    def check(self) -> None:
        """Refuse what does not fit together, naming the flags, before anything starts."""
        for name, flag in flags().items():
            if flag.cli is None or self.scenario in flag.scenarios:
                continue
            if getattr(self, name) != _default(name):
                raise CdpsimError(
                    f"{flag.cli} applies to the {' and '.join(flag.scenarios)} scenario, "
                    f"not {self.scenario}",
                    code=2,
                )
        if self.arrivals is not None:
            for name in ("users", "spawn_rate"):
                if getattr(self, name) is not None:
                    raise CdpsimError(
                        f"{flags()[name].cli} sets the closed model's users; with --arrivals "
                        "the guests in flight are whatever the arrivals imply",
                        code=2,
                    )
        if self.remote_workers and not self.host:
            raise CdpsimError(
                "--remote-workers needs --host: the embedded server listens on loopback only, "
                "so workers on other machines could not reach it",
                code=2,
            )

    def locust_args(self) -> list[str]:
        """The `--cdpsim-*` arguments that carry this run to a Locust process."""
        args: list[str] = []
        for name, flag in flags().items():
            value = getattr(self, name)
            if flag.locust and value is not None:
                args += [_locust_flag(name), flag.show(value)]
        return args

    @classmethod
    def from_options(cls, options: Any) -> LoadOptions:
        """Read the run back from Locust's parsed options (see `add_arguments`)."""
        if not getattr(options, "cdpsim_profile", None):
            raise ValueError("--cdpsim-profile is required (the profile YAML the load comes from)")
        values = {}
        for name, flag in flags().items():
            if not flag.locust:
                continue
            raw = getattr(options, "cdpsim_" + name, None)
            if raw is None:
                values[name] = _default(name)
            elif flag.parse is not None:
                values[name] = flag.parse(raw)
            elif value_type(name) is Path:
                values[name] = Path(raw)
            else:
                values[name] = raw
        return cls(**values)

    @classmethod
    def from_cli(cls, values: dict[str, Any]) -> LoadOptions:
        """From the command line's values (text for the fields that `parse` it)."""
        parsed = {}
        for name, value in values.items():
            flag = flags()[name]
            if flag.parse is not None and isinstance(value, str):
                try:
                    value = flag.parse(value)
                except ValueError as exc:
                    raise CdpsimError(f"{flag.cli} {exc}", code=2) from None
            parsed[name] = value
        return cls(**parsed)


def flags() -> dict[str, Flag]:
    """Each field of `LoadOptions` with its `Flag`, in declaration order."""
    return {f.name: f.metadata["flag"] for f in dataclasses.fields(LoadOptions)}


def value_type(name: str) -> type:
    """The field's type without `| None` (int, float, str, bool, Path or FaultMix)."""
    hint = typing.get_type_hints(LoadOptions)[name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    assert isinstance(hint, type)
    return hint


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(LoadOptions) if f.name == name)


def _locust_flag(name: str) -> str:
    return _PREFIX + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Register the carried options on Locust's parser (`events.init_command_line_parser`)."""
    # Parsed as plain numbers and text: a master sends its parsed options to its workers
    # (msgpack), so paths and fault mixes become objects only in `from_options`.
    group = parser.add_argument_group("cdpsim", "cdpsim load plan (set by `cdpsim load`)")
    for name, flag in flags().items():
        if not flag.locust:
            continue
        kind = value_type(name)
        plain = flag.parse is None and kind in (int, float)
        group.add_argument(
            _locust_flag(name),
            dest="cdpsim_" + name,
            type=kind if plain else str,
            default=None,
            help=flag.help.split(". ")[0],
        )
