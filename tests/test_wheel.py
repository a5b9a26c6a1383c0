"""The built wheel, in a fresh venv, runs generate, validate and load outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PIP = [sys.executable, "-m", "pip"]


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.mark.timeout(300)
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("cdpsim-*.whl")
    venv = tmp_path / "venv"
    # No pip in the new venv (creating one with pip costs seconds): this run's pip installs into it.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    # The dependencies come from this test run's own environment through a path file (downloading
    # them again would take minutes): a plain path line adds that site-packages to sys.path but
    # does not run its .pth files, so the checkout's editable install stays out of the new venv.
    (packages,) = (venv / "lib").glob("python3*/site-packages")
    (packages / "cdpsim_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [*_PIP, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", str(wheel)],
        cwd=tmp_path,
    )
    # No symlink and no checkout path: the package data is real files inside site-packages.
    site = packages / "generator"
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import generator; print(generator.__file__)"],
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).parent == site, where  # the wheel's copy, not the checkout's
    assert (site / "defaults" / "smoke.yaml").is_file()
    assert not (site / "defaults").is_symlink()
    assert (site / "locustfiles" / "journeys.py").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    cdpsim = str(venv / "bin" / "cdpsim")
    _run([cdpsim, "generate", "smoke", "--out", "data", "--events", "2000"], cwd=work)
    _run([cdpsim, "validate", "data"], cwd=work)
    # A second of traffic shows the locustfiles and the server start from the installed package.
    _run([cdpsim, "load", "smoke", "--run-time", "1s"], cwd=work)


def test_root_profiles_equal_the_bundled_ones() -> None:
    bundled = ROOT / "generator" / "defaults"
    names = sorted(p.name for p in bundled.glob("*.yaml"))
    assert names == sorted(p.name for p in (ROOT / "profiles").glob("*.yaml"))
    for name in names:
        assert (ROOT / "profiles" / name).read_bytes() == (bundled / name).read_bytes(), name
