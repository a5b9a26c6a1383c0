"""Shared test fixtures: paths to the spec and profiles, small generated datasets, and one real
`cdpsim load` run whose outputs several tests read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

from generator.dataset.writer import GenerateRequest, generate
from generator.profile import Profile, load_profile, parse_profile

# `make test` keeps property runs short; HYPOTHESIS_PROFILE=thorough explores far more.
settings.register_profile("default", max_examples=12)
settings.register_profile("thorough", max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
# The shared spec sits beside the repository in CI; a plain clone has only the packaged copy.
SHARED_SPEC = ROOT.parent / "shared" / "spec"
PACKAGED_SCHEMA = ROOT / "generator" / "events" / "tracking-event.schema.json"


def schema_path() -> Path:
    shared = SHARED_SPEC / "tracking-event.schema.json"
    return shared if shared.exists() else PACKAGED_SCHEMA


def make_dataset(out: Path, profile: Profile | str, **kwargs: object) -> Path:
    prof = profile if isinstance(profile, Profile) else load_profile(PROFILES / f"{profile}.yaml")
    result = generate(GenerateRequest(profile=prof, out=out, **kwargs))  # type: ignore[arg-type]
    assert result.complete
    return out


@pytest.fixture(scope="session")
def smoke_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("smoke"), "smoke")


@pytest.fixture(scope="session")
def multi_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("multi"), "multi-region", events=40_000)


def modes_data() -> dict[str, Any]:
    """smoke.yaml with a flow of every mode: two universal flows on disjoint buckets, a third
    overlapping both, an optimized bandit and a unique flow at half allocation."""
    data = yaml.safe_load((PROFILES / "smoke.yaml").read_text())
    data["name"] = "modes"
    data["days"] = 3
    # Guests who arrive through the window (not only ones active before it), so that every
    # bandit period has first exposures.
    data["population"]["activeDays"] = 1
    data["behaviour"]["catalog"] += [
        {"type": "socks", "name": "Socks", "items": 3},
        {"type": "hats", "name": "Hats", "items": 3},
        {"type": "belts", "name": "Belts", "items": 3},
    ]

    def universal(fid: str, goal: str, pages: list[str], ranges: list[list[int]]) -> dict[str, Any]:
        variants = [
            {"name": "control" if i == 0 else f"v{i}", "buckets": r, "conversionRate": 0.2}
            for i, r in enumerate(ranges)
        ]
        return {
            "friendlyId": fid,
            "triggerPages": pages,
            "goalProductType": goal,
            "assignment": "universal",
            "buckets": [ranges[0][0], ranges[-1][1]],
            "variants": variants,
        }

    data["flows"] = [
        universal("uni_low", "running_shoes", ["home"], [[1, 30], [31, 60]]),
        universal("uni_high", "apparel", ["home", "product"], [[61, 120]]),
        universal("uni_mid", "belts", ["home"], [[31, 50], [51, 90]]),
        {
            "friendlyId": "bandit",
            "triggerPages": ["product", "category"],
            "goalProductType": "socks",
            "assignment": "optimized",
            "bandit": {"periodHours": 12, "impressionsPerPeriod": 60},
            "variants": [
                {"name": "control", "conversionRate": 0.05},
                {"name": "better", "conversionRate": 0.15},
                {"name": "worse", "conversionRate": 0.02},
            ],
        },
        {
            "friendlyId": "uniq",
            "triggerPages": ["cart"],
            "goalProductType": "hats",
            "trafficAllocation": 0.5,
            "variants": [
                {"name": "control", "weight": 0.5, "conversionRate": 0.1},
                {"name": "b", "weight": 0.5, "conversionRate": 0.2},
            ],
        },
    ]
    return data


MODES = parse_profile(modes_data(), source="modes.yaml")
# 300 guests make about 11,000 events in the 3 days: the cut keeps 8,000 of them.
MODES_SIZE = {"guests": 300, "events": 8000}


@pytest.fixture(scope="session")
def modes_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The modes profile as a YAML file (what `cdpsim serve` reads)."""
    path = tmp_path_factory.mktemp("modes") / "modes.yaml"
    path.write_text(yaml.safe_dump(modes_data()))
    return path


@pytest.fixture(scope="session")
def modes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset of the modes profile: every assignment mode, an --events cut."""
    return make_dataset(tmp_path_factory.mktemp("modes-ds"), MODES, **MODES_SIZE)


@pytest.fixture(scope="session")
def journeys_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """One real `cdpsim load` (journeys, one process, with --report): its exit code and report
    directory. Shared by the tests that only read what it wrote (each run costs seconds).
    multi-region: four points of sale, a flow shown to 10% of guests, the diurnal shape."""
    from generator.cli import main

    out = tmp_path_factory.mktemp("journeys-report")
    args = ["--run-time", "4s", "--users", "6", "--think-time-scale", "0", "--report", str(out)]
    code = main(["load", str(PROFILES / "multi-region.yaml"), *args])
    return code, out
