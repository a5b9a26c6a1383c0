"""The Python face: lazy imports, and the public names reach the same code as the CLI."""

from __future__ import annotations

import subprocess
import sys

import generator
from generator.profile import BUNDLED


def test_import_generator_does_not_import_numpy() -> None:
    code = "import sys, generator; print('numpy' in sys.modules, 'yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_load_profile_is_public() -> None:
    profile = generator.load_profile(BUNDLED / "smoke.yaml")
    assert profile == generator.load_profile(BUNDLED / "smoke.yaml")
    assert set(generator.__all__) >= {"__version__", "load_profile", "open_dataset"}
