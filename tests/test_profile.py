"""Profiles: the shipped ones load; every kind of bad profile gets its own readable message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROFILES

from generator.profile import ProfileError, load_profile, parse_profile


def base() -> dict[str, Any]:
    return yaml.safe_load((PROFILES / "smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["retail-ireland", "smoke", "multi-region"])
def test_shipped_profiles_load(name: str) -> None:
    profile = load_profile(PROFILES / f"{name}.yaml")
    assert profile.name == name
    assert len(profile.sha256) == 64


def test_default_profile_is_the_documented_tenant() -> None:
    p = load_profile(PROFILES / "retail-ireland.yaml")
    pos = p.points_of_sale[0]
    assert (pos.name, pos.language, pos.currency, pos.timezone) == (
        "myretailsite/ireland",
        "EN",
        "EUR",
        "Europe/Dublin",
    )
    assert pos.session_timeout_minutes == 20
    flow = p.flow("running_shoes_popup_02")
    assert flow is not None and len(flow.variants) == 2
    rates = {v.conversion_rate for v in flow.variants}
    assert len(rates) == 2, "control and pop-up convert differently"
    assert any(f.kind == "experience" for f in p.flows)


def test_multi_region_has_what_the_issue_asks() -> None:
    p = load_profile(PROFILES / "multi-region.yaml")
    assert len({pos.timezone for pos in p.points_of_sale}) >= 3
    channels = {c for pos in p.points_of_sale for c in pos.channels}
    assert {"WEB", "MOBILE_APP"} <= channels
    assert any(len(f.variants) == 3 for f in p.flows)
    assert any(f.traffic_allocation == pytest.approx(0.1) for f in p.flows)


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ProfileError) as info:
        parse_profile(data, source="x.yaml")
    return info.value.problems


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = base()
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("flows.0.variants.0.weight", 0.8, "flows[0].variants: weights sum to 1.3, must be 1"),
        ("clientKey", "short", "clientKey: String should match pattern"),
        ("clientKey", _DELETE, "clientKey: Field required"),
        ("pointsOfSale.0.timezone", "Mars/Olympus", "pointsOfSale[0].timezone: unknown timezone"),
        ("pointsOfSale.0.language", "english", "pointsOfSale[0].language"),
        ("pointsOfSale.0.channels", ["WEB", "FAX"], "pointsOfSale[0].channels[1]"),
        ("start", "2025-03-03T00:00:00", "start: needs a UTC offset"),
        ("days", -1, "days: Input should be greater than 0"),
        ("population.browsersPerGuest", [0.5, 0.2], "population.browsersPerGuest: shares sum"),
        ("flows.0.goalProductType", "spaceships", "flows[0].goalProductType: 'spaceships'"),
        ("flows.1.goalProductType", "running_shoes", "is already the goal of flows[0]"),
        ("flows.0.attributionHours", 5, "flows[0].attributionHours: is 5, must be one of"),
        ("flows.0.friendlyId", "Not-Snake", "flows[0].friendlyId"),
        ("flows.0.triggerPages", ["basement"], "flows[0].triggerPages[0]"),
        ("flows.0.variants.0.conversionRate", 1.5, "flows[0].variants[0].conversionRate"),
        ("behaviour.dailyCurve", [1, 2, 3], "behaviour.dailyCurve: has 3 values, needs 24"),
        ("unknownField", 1, "unknownField: Extra inputs are not permitted"),
    ],
)
def test_bad_profile_message(path: str, value: Any, expected: str) -> None:
    problems = _problems(_mutate(path, value))
    assert any(expected in p for p in problems), problems


def test_transitions_over_one() -> None:
    data = base()
    data["behaviour"]["transitions"] = {"home": {"category": 0.8, "search": 0.5}}
    assert any("outgoing probabilities sum to 1.3" in p for p in _problems(data))


def test_every_problem_reported_at_once() -> None:
    data = _mutate("flows.0.variants.0.weight", 0.8)
    data["pointsOfSale"][0]["timezone"] = "Nowhere/City"
    assert len(_problems(data)) >= 2


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nclientKey: [unclosed\n")
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert "line" in info.value.problems[0] and "not valid YAML" in info.value.problems[0]
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ProfileError, match="mapping"):
        load_profile(tmp_path / "list.yaml")


def test_cli_reports_profile_errors_without_traceback(tmp_path: Path) -> None:
    data = _mutate("flows.0.variants.0.weight", 0.8)
    bad = tmp_path / "weights.yaml"
    bad.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "generator.cli", "generate", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bad}: flows[0].variants: weights sum to 1.3, must be 1" in proc.stderr
    assert "Traceback" not in proc.stderr
