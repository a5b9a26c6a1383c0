"""The load plan: what one `cdpsim load` run asks of every Locust process, as Locust options."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["READY_WAIT_S", "SCENARIOS", "LoadPlan", "add_arguments", "parse_duration"]

# How long a master waits for its workers' first blocks of guests before starting regardless.
READY_WAIT_S = 120.0

Scenario = Literal["journeys", "ingest"]
SCENARIOS: tuple[Scenario, ...] = ("journeys", "ingest")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """The run's settings; `None` means "take the profile's `load:` value"."""

    profile: Path
    seed: int | None = None
    users: int | None = None
    spawn_rate: float | None = None
    run_time: float | None = None
    rate: float | None = None  # open model: events/s over the whole run, all workers together
    batch_size: int | None = None
    think_time_scale: float | None = None
    ingest_path: str = "/v1/ingest"
    timeout: float = 10.0
    run_dir: Path | None = None  # where each Locust process leaves its counters
    workers: int = 1  # Locust worker processes the users are spread over

    def locust_args(self) -> list[str]:
        """The custom command-line options that carry this plan to a Locust process."""
        args = ["--cdpsim-profile", str(self.profile), "--cdpsim-ingest-path", self.ingest_path]
        args += ["--cdpsim-timeout", repr(self.timeout), "--cdpsim-workers", str(self.workers)]
        for flag, value in (
            ("--cdpsim-seed", self.seed),
            ("--cdpsim-users", self.users),
            ("--cdpsim-spawn-rate", self.spawn_rate),
            ("--cdpsim-run-time", self.run_time),
            ("--cdpsim-rate", self.rate),
            ("--cdpsim-batch-size", self.batch_size),
            ("--cdpsim-think-time-scale", self.think_time_scale),
            ("--cdpsim-run-dir", self.run_dir),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args

    @classmethod
    def from_options(cls, options: Any) -> LoadPlan:
        """Read the plan back from Locust's parsed options (see `add_arguments`)."""
        if not getattr(options, "cdpsim_profile", None):
            raise ValueError("--cdpsim-profile is required (the profile YAML the load comes from)")
        run_dir = getattr(options, "cdpsim_run_dir", None)
        return cls(
            profile=Path(options.cdpsim_profile),
            seed=options.cdpsim_seed,
            users=options.cdpsim_users,
            spawn_rate=options.cdpsim_spawn_rate,
            run_time=options.cdpsim_run_time,
            rate=options.cdpsim_rate,
            batch_size=options.cdpsim_batch_size,
            think_time_scale=options.cdpsim_think_time_scale,
            ingest_path=options.cdpsim_ingest_path,
            timeout=options.cdpsim_timeout,
            run_dir=Path(run_dir) if run_dir else None,
            workers=options.cdpsim_workers,
        )


def add_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Register the plan's options on Locust's parser (`events.init_command_line_parser`)."""
    group = parser.add_argument_group("cdpsim", "cdpsim load plan (set by `cdpsim load`)")
    group.add_argument("--cdpsim-profile", default="", help="profile YAML the load comes from")
    group.add_argument("--cdpsim-seed", type=int, default=None, help="root seed (profile's)")
    group.add_argument("--cdpsim-users", type=int, default=None, help="peak users")
    group.add_argument("--cdpsim-spawn-rate", type=float, default=None, help="users started/s")
    group.add_argument("--cdpsim-run-time", type=float, default=None, help="run time, seconds")
    group.add_argument("--cdpsim-rate", type=float, default=None, help="open model: events/s")
    group.add_argument("--cdpsim-batch-size", type=int, default=None, help="events per request")
    group.add_argument("--cdpsim-think-time-scale", type=float, default=None, help="gap factor")
    group.add_argument("--cdpsim-ingest-path", default="/v1/ingest", help="ingestion URL path")
    group.add_argument("--cdpsim-timeout", type=float, default=10.0, help="request timeout, s")
    group.add_argument(
        "--cdpsim-run-dir", default="", help="where to leave this process's counters"
    )
    group.add_argument("--cdpsim-workers", type=int, default=1, help="worker processes in all")


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
