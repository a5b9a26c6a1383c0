"""The Python face: lazy imports, and the public names reach the same code as the CLI."""

from __future__ import annotations

import gc
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

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


DEFAULT_THRESHOLD = gc.get_threshold()
CDPSIM = Path(sys.executable).with_name("cdpsim")


def cli_generate(out: Path, profile: str, *args: str) -> Path:
    subprocess.run([str(CDPSIM), "generate", profile, "--out", str(out), *args], check=True)
    return out


def dataset_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("profile", "args", "kwargs"),
    [
        ("smoke", ["--events", "3000"], {"events": 3000}),
        ("retail-ireland", ["--events", "4000", "--seed", "7"], {"events": 4000, "seed": 7}),
    ],
)
def test_iter_events_gives_the_cli_datasets_events_in_order(
    tmp_path: Path, profile: str, args: list[str], kwargs: dict[str, int]
) -> None:
    cli = cli_generate(tmp_path / "cli", profile, *args)
    expected = [orjson.loads(line) for line in (cli / "events.jsonl").read_bytes().splitlines()]
    got = list(generator.iter_events(profile, **kwargs))
    assert len(got) == kwargs["events"]
    assert got == expected


def test_iter_events_removes_its_temporary_directory_when_closed() -> None:
    before = set(Path(tempfile.gettempdir()).glob("cdpsim-events-*"))
    it = generator.iter_events("smoke", events=500)
    first = next(it)
    made = set(Path(tempfile.gettempdir()).glob("cdpsim-events-*")) - before
    assert len(made) == 1 and first["type"]
    it.close()
    assert not any(p.exists() for p in made)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (["--events", "3000"], {"events": 3000}),
        (
            ["--events", "3000", "--format", "jsonl.gz", "--workers", "2"],
            {"events": 3000, "format": "jsonl.gz", "workers": 2},
        ),
    ],
)
def test_generate_from_python_writes_the_cli_bytes(
    tmp_path: Path, args: list[str], kwargs: dict[str, Any]
) -> None:
    cli = cli_generate(tmp_path / "cli", "smoke", *args)
    result = generator.generate("smoke", tmp_path / "api", **kwargs)
    assert result.complete and result.events == 3000
    assert dataset_files(tmp_path / "api") == dataset_files(cli)


def test_generate_from_python_leaves_the_process_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.dataset import writer

    tuned: list[bool] = []
    monkeypatch.setattr(writer, "keep_freed_memory", lambda: tuned.append(True) or True)
    gc.set_threshold(1234, 11, 12)
    try:
        seen: set[bool] = set()

        def progress(phase: str, done: int, total: int) -> None:
            seen.add(gc.isenabled())  # during the run too, not only after it

        request = writer.GenerateRequest(
            profile=generator.load_profile(BUNDLED / "smoke.yaml"), out=tmp_path, events=2000
        )
        writer.generate(request, progress=progress)
        generator.generate("smoke", tmp_path / "again", events=2000)
        assert gc.isenabled() and seen == {True}
        assert gc.get_threshold() == (1234, 11, 12)
        assert tuned == []  # the allocator of the caller's process is left alone
    finally:
        gc.set_threshold(*DEFAULT_THRESHOLD)


def test_generate_from_python_keeps_nothing_once_it_returns(tmp_path: Path) -> None:
    """No cache at module level: the run's renderer and the pilot's blocks (held by the
    run's own PlanCache) are gone with the call."""
    from generator.events.render import BlockRenderer
    from generator.model.block import BlockFacts

    # Few guests: the pilot's blocks are then not the run's, and nothing would take them.
    generator.generate("smoke", tmp_path / "a", events=300, guests=40)
    gc.collect()
    left = [o for o in gc.get_objects() if isinstance(o, BlockRenderer | BlockFacts)]
    assert left == []
