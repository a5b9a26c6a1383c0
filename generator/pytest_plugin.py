"""pytest plugin: `cdpsim_dataset`, a factory of generated datasets cached per test session."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from generator.dataset.reader import Dataset

__all__ = ["cdpsim_dataset"]

DatasetFactory = Callable[..., "Dataset"]


@pytest.fixture(scope="session")
def cdpsim_dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetFactory:
    """A factory: `cdpsim_dataset(profile="smoke", seed=1, events=5000)` gives a Dataset
    (generator.dataset.reader.Dataset) written by `generator.generate`. The same arguments give
    the same directory for the rest of the test session: each dataset is generated once."""
    from generator.api import generate
    from generator.dataset.reader import open_dataset

    made: dict[tuple[str, int, int], Path] = {}

    def factory(profile: str | Path = "smoke", seed: int = 1, events: int = 5000) -> Dataset:
        key = (str(profile), seed, events)
        if key not in made:
            name = re.sub(r"[^A-Za-z0-9]+", "-", Path(str(profile)).stem)
            out = tmp_path_factory.mktemp(f"cdpsim-{name}-s{seed}-e{events}", numbered=True)
            generate(profile, out, seed=seed, events=events)
            made[key] = out
        return open_dataset(made[key])

    return factory
