"""Stop signals at the CLI's edge: answered while the CLI loads, never lost in numpy, and a lost
KeyboardInterrupt raised again at the next block (issue 9, section 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from generator.events.lines import block_rows, render_rows, sort_rows
from generator.events.render import BlockRenderer
from generator.model.block import simulate_block
from generator.model.world import World
from generator.profile import load_profile, resolve_profile

CLI = [sys.executable, "-m", "generator.cli"]


def test_the_cli_entry_imports_nothing_heavy() -> None:
    """What the console script imports before `run` can install its signal handling."""
    code = (
        "import sys, generator.cli\n"
        "heavy = ('typer', 'click', 'rich', 'numpy', 'pydantic', 'yaml', 'orjson')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(
    ("command", "signum", "code", "word"),
    [
        ("generate", signal.SIGINT, 130, "interrupted"),
        ("generate", signal.SIGTERM, 143, "terminated"),
        ("info", signal.SIGINT, 130, "interrupted"),  # not a file command: Python's own SIGINT
    ],
)
def test_a_stop_while_the_cli_loads_exits_quietly(
    tmp_path: Path, command: str, signum: int, code: int, word: str
) -> None:
    args = {"generate": ["smoke", "--out", str(tmp_path / "out")], "info": [str(tmp_path)]}
    proc = subprocess.Popen(
        [*CLI, command, *args[command]],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CDPSIM_TEST_PAUSE_AT": "import"},
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.strip() == "cdpsim-test-pause import", first + proc.stderr.read()
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert err.strip() == word  # one word, no traceback
    assert not (tmp_path / "out").exists()


def test_numpy_runs_no_python_code_when_it_probes_event_types() -> None:
    """numpy asks an operand's class for __array_ufunc__ and clears whatever that raises; a
    Ctrl-C raised in Python code there is lost (on Python 3.11, EnumType.__getattr__). A block
    simulated and rendered must run none."""
    renderer = BlockRenderer(World(load_profile(resolve_profile("smoke"))))
    probes: list[str] = []

    def profiler(frame: object, event: str, arg: object) -> None:
        code = frame.f_code  # type: ignore[attr-defined]
        if (
            event == "call"
            and code.co_name == "__getattr__"
            and code.co_filename.endswith("enum.py")
        ):
            probes.append(frame.f_locals.get("name", "?"))  # type: ignore[attr-defined]

    sys.setprofile(profiler)
    try:
        facts = simulate_block(renderer.world, 0)
        rows, extras = block_rows(renderer, facts)
        render_rows(renderer, rows[sort_rows(rows)], extras)
    finally:
        sys.setprofile(None)
    assert probes == []


@pytest.mark.parametrize("phase", ["simulate", "join"])
def test_a_lost_keyboard_interrupt_still_stops_generate(tmp_path: Path, phase: str) -> None:
    """The process receives SIGINT and the KeyboardInterrupt is swallowed (as numpy did): the
    run stops at its next block, or before it commits the dataset; exit 130, no dataset."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "generate", "smoke", "--out", str(out), "--guests", "2100"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CDPSIM_TEST_PAUSE_AT": f"lost-{phase}"},
    )
    assert f"cdpsim-test-lost {phase}" in proc.stderr
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "manifest.json").exists()
