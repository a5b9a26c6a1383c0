"""The import layers in pyproject.toml hold, and a wrong-way import makes `lint-imports` fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the contract in `tree`'s pyproject.toml over the package in `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "generator",
        tmp_path / "generator",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


# (module, wrong-way import appended to it, the importer the report must name)
_WRONG_WAY = [
    # the model reaching up into rendering (what model/history.py used to do)
    ("model/world.py", "import generator.events.render", "generator.model.world"),
    # rendering reaching up into the dataset
    ("events/render.py", "import generator.dataset.plan", "generator.events.render"),
    # the vocabulary depending on the model it sits below
    ("vocabulary.py", "import generator.model.refs", "generator.vocabulary"),
    # two peers that must stay independent
    ("replay/plan.py", "import generator.load.shapes", "generator.replay.plan"),
    # an import inside a function counts too
    ("model/pools.py", "def _f():\n    import generator.cli", "generator.model.pools"),
]


def test_every_wrong_way_import_is_reported(tmp_path: Path) -> None:
    # One lint run over one copy holding all of them: each must be named in the report.
    tree = _copy(tmp_path)
    for module, line, _ in _WRONG_WAY:
        path = tree / "generator" / module
        path.write_text(path.read_text() + "\n" + line + "\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "generator layers BROKEN" in result.stdout
    for _, _, named in _WRONG_WAY:
        assert named in result.stdout, named


def test_a_new_top_level_module_must_be_placed_in_a_layer(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    (tree / "generator" / "unplaced.py").write_text('"""Not in any layer."""\n')
    result = _lint(tree)
    assert result.returncode != 0
    assert "generator.unplaced" in result.stdout + result.stderr
