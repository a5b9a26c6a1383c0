"""One source for `cdpsim load`'s options: flags, Locust arguments and the plan read back agree."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import typer.main

from generator.cli import app
from generator.errors import CdpsimError
from generator.fault_injection import FaultMix
from generator.load.options import LoadOptions, add_arguments, flags, value_type

DOCS = Path(__file__).resolve().parents[1] / "docs" / "load.md"


def _other_value(name: str) -> object:
    """A value unlike the field's default, of its type (a choice where it has choices)."""
    flag = flags()[name]
    default = getattr(LoadOptions(), name)
    kind = value_type(name)
    if kind is FaultMix:
        return FaultMix.parse("dup=0.25,malformed=0.5")
    if flag.parse is not None and kind is str:
        for candidate in ("ingest", "diurnal", "spike"):
            try:
                value = flag.parse(candidate)
            except ValueError:
                continue
            if value != default:
                return value
    if kind is bool:
        return not default
    if kind is int:
        return (default or 0) + 7
    if kind is float:
        return (default or 0.0) + 2.5
    if kind is Path:
        return Path("/somewhere/else.yaml")
    return f"{default}-other"


def test_every_carried_option_goes_to_locust_and_comes_back() -> None:
    carried = [n for n, f in flags().items() if f.locust]
    assert {"profile", "seed", "users", "rate", "run_dir", "workers", "faults"} <= set(carried)
    asked = LoadOptions(**{n: _other_value(n) for n in carried})
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    back = LoadOptions.from_options(parser.parse_args(asked.locust_args()))
    for name in carried:
        assert getattr(back, name) == getattr(asked, name), name
    # The parser knows exactly the carried options, no more.
    registered = {a.dest for a in parser._actions if a.dest.startswith("cdpsim_")}
    assert registered == {"cdpsim_" + n for n in carried}
    # Nothing carried when nothing was asked beyond the defaults and the profile.
    plain = LoadOptions.from_options(
        parser.parse_args(LoadOptions(profile=Path("p")).locust_args())
    )
    assert plain == LoadOptions(profile=Path("p"))


def test_every_flag_of_the_command_is_a_field_and_every_field_is_reachable() -> None:
    command = typer.main.get_command(app).commands["load"]  # type: ignore[attr-defined]
    params = {p.name: p for p in command.params}
    typed = {n for n, f in flags().items() if f.cli or f.argument}
    assert set(params) == typed
    for name in typed - {"profile"}:
        assert params[name].opts == [flags()[name].cli], name
    # Every field is a flag, or carried to Locust (set by `cdpsim load` itself): none is idle.
    for field in dataclasses.fields(LoadOptions):
        flag = flags()[field.name]
        assert flag.cli or flag.argument or flag.locust, field.name


def test_every_flag_is_documented() -> None:
    text = DOCS.read_text()
    missing = [f.cli for f in flags().values() if f.cli and f.cli not in text]
    assert not missing, f"docs/load.md does not mention {missing}"


@pytest.mark.parametrize(
    ("scenario", "asked", "says"),
    [
        ("journeys", {"batch_size": 10}, "--batch-size applies to the ingest scenario"),
        ("journeys", {"rate": 100.0}, "--rate applies to the ingest scenario"),
        ("journeys", {"faults": FaultMix.parse("dup=0.1")}, "--faults applies to the ingest"),
        ("ingest", {"arrivals": 3.0}, "--arrivals applies to the journeys scenario"),
        ("ingest", {"think_time_scale": 0.5}, "--think-time-scale applies to the journeys"),
        ("journeys", {"arrivals": 3.0, "users": 4}, "--users sets the closed model"),
    ],
)
def test_flags_that_do_not_apply_are_refused(scenario: str, asked: dict, says: str) -> None:
    with pytest.raises(CdpsimError, match=says) as caught:
        LoadOptions(profile=Path("p"), scenario=scenario, **asked).check()
    assert caught.value.code == 2


def test_the_default_failure_threshold_is_one_percent() -> None:
    assert LoadOptions().slo.max_fail_ratio == 0.01
    assert LoadOptions().slo.max_late_ratio is None  # applies to the open model only
    assert LoadOptions(arrivals=2.0).slo.max_late_ratio == 0.01
