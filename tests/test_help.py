"""Every command's --help reads well, -h is accepted everywhere, and bad values name their
option (issue 13, "Help and messages")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.core import TyperArgument, TyperOption

from generator.cli import main, root
from generator.cli.root import command
from generator.profile import BUNDLED

COMMANDS = sorted(command().commands)


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main([*args, "-h"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_reads_well(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping: each row on one line
    text = _help(capsys, *([name] if name else []))
    assert "Usage: " in text
    assert "<bool>" not in text  # switches take no value
    assert "{" not in text and "}" not in text  # arguments by name, not {profile}
    assert str(BUNDLED) not in text and "/defaults/" not in text  # no installed paths
    assert "…" not in text  # nothing cut


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_says_what_it_is(name: str) -> None:
    cmd = command().commands[name]
    for param in cmd.params:
        if isinstance(param, TyperOption | TyperArgument):
            assert (param.help or "").strip(), f"cdpsim {name} {param.opts[0]}: no help text"


def _described(cmd: object) -> list[tuple[object, ...]]:
    params = getattr(cmd, "params", [])
    return [(p.name, tuple(p.opts), p.help, p.default, p.required) for p in params]


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_run_alone_is_the_command_of_the_whole_tree(name: str) -> None:
    # `main` registers only the module of the command asked for (root._MODULES): that command
    # must be the very one the whole tree has, and the module must register nothing else.
    alone, whole = command(name), command()
    assert sorted(alone.commands) == sorted(
        n for n in COMMANDS if root._MODULES.get(n) == root._MODULES[name]
    )
    assert _described(alone.commands[name]) == _described(whole.commands[name])
    assert alone.commands[name].help == whole.commands[name].help


def test_a_bundled_profile_default_shows_by_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert "[default: retail-ireland]" in _help(capsys, "serve")


def test_replay_speed_names_its_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", str(tmp_path), "--target", "http://127.0.0.1:9", "--speed", "abc"]
    assert main(args) == 2
    assert "Invalid value for '--speed'" in capsys.readouterr().err


def test_replay_input_errors_draw_no_bar(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "generator.cli", "replay"]
    missing = subprocess.run(
        [*cli, str(tmp_path / "nope"), "--target", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "not a directory" in missing.stderr
    assert "replay ━" not in missing.stderr and "0/?" not in missing.stderr, missing.stderr
