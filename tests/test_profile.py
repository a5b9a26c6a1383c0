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


def test_a_key_given_twice_is_refused_naming_the_line(tmp_path: Path) -> None:
    text = (PROFILES / "smoke.yaml").read_text().replace("seed: 7\n", "seed: 7\nseed: 8\n", 1)
    twice = tmp_path / "twice.yaml"
    twice.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(twice)
    (problem,) = info.value.problems
    assert problem.startswith("line 4, column 1:") and "'seed' is given twice" in problem
    assert "first on line 3" in problem
    # Keys a merge brings in may be overridden: that is not a repeat.
    merged = tmp_path / "merged.yaml"
    merged.write_text(text.replace("seed: 8\n", "") + "\nx: &base {a: 1}\ny: {<<: *base, a: 2}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(merged)
    assert not any("twice" in p for p in info.value.problems)  # only x and y are unknown


def test_no_follow_on_error_after_the_real_ones() -> None:
    data = base()
    data["pointsOfSale"][0]["timezone"] = "Nowhere/City"
    problems = _problems(data)
    assert problems == [
        "pointsOfSale[0].timezone: unknown timezone 'Nowhere/City' (use an IANA name such as "
        "Europe/Dublin)"
    ]
    data["pointsOfSale"] = []  # truly empty: then the length is the problem
    assert any("at least 1 item" in p for p in _problems(data))


def test_a_misspelt_bundled_name_lists_them_and_suggests_the_nearest() -> None:
    from generator.profile import resolve_profile

    with pytest.raises(ProfileError) as info:
        resolve_profile("retail-irland")
    (problem,) = info.value.problems
    assert "bundled: multi-region, retail-ireland, smoke" in problem
    assert problem.endswith("did you mean retail-ireland?")
    with pytest.raises(ProfileError, match=r"smoke\)$"):
        resolve_profile("zzz")  # nothing near: the list alone
    assert resolve_profile("smoke").name == "smoke.yaml"


@pytest.mark.parametrize(
    ("group", "values"),
    [("variants", [0.333, 0.333, 0.333]), ("shares", [0.6, 0.405])],
)
def test_weights_and_shares_follow_one_rule(group: str, values: list[float]) -> None:
    """Within SHARE_TOLERANCE of 1: accepted and divided by their sum; else refused, with
    the same message for variant weights and point-of-sale shares."""
    from generator.profile import SHARE_TOLERANCE

    data = base()

    def set_values(vals: list[float]) -> None:
        if group == "variants":
            data["flows"][0]["variants"] = [
                {"name": f"v{i}", "weight": v, "conversionRate": 0.1} for i, v in enumerate(vals)
            ]
        else:
            pos = data["pointsOfSale"][0]
            data["pointsOfSale"] = [
                {**pos, "name": f"shop/{i}", "share": v} for i, v in enumerate(vals)
            ]

    set_values(values)
    profile = parse_profile(data)
    got = (
        [v.weight for v in profile.flows[0].variants]
        if group == "variants"
        else [p.share for p in profile.points_of_sale]
    )
    assert sum(got) == pytest.approx(1, abs=1e-12)
    assert got == pytest.approx([v / sum(values) for v in values])
    off = [v * (1 + 3 * SHARE_TOLERANCE) for v in values]  # 3% over: refused
    set_values(off)
    assert any("must be 1 (within 0.01" in p for p in _problems(data))
    set_values([60, 40])  # percentages: refused, saying how to write them
    assert any("sum to 100, must be 1" in p and "0.6 and 0.4" in p for p in _problems(data))


def test_shares_given_for_every_point_of_sale_or_none() -> None:
    data = base()
    pos = data["pointsOfSale"][0]
    data["pointsOfSale"] = [{**pos, "name": f"shop/{i}"} for i in range(4)]
    assert [p.share for p in parse_profile(data).points_of_sale] == [0.25] * 4
    data["pointsOfSale"][0]["share"] = 0.5
    assert any("every point of sale or for none" in p for p in _problems(data))
