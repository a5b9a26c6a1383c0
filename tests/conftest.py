"""Shared test fixtures: paths to the spec and profiles, and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from generator.dataset.writer import GenerateRequest, generate
from generator.profile import Profile, load_profile

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
