"""Golden datasets: the sha256 of every file of two small datasets, pinned.

A change of random draw order, of a template or of a field shows here as a change of bytes. The
bytes also depend on the versions of numpy (random streams), Faker (name and user-agent pools),
orjson (escaping) and Python's minor version; with other versions than those pinned in
`constraints.txt` (what `make install` installs) the test skips and says which differ.
"""

from __future__ import annotations

import hashlib
import sys
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest
from conftest import make_dataset

# The versions the hashes below were made with (the README's "Golden bytes" says the same).
PINNED = {"numpy": "2.4.6", "Faker": "40.63.0", "orjson": "3.13.0", "python": "3.11"}

GOLDEN = {
    "smoke": {
        "events.jsonl": "fd6ff5401528c01251845b3a1356dbec037b4b5ed1e83f59245afc7996644fa9",
        "guests.jsonl": "60340dd1e3750662a035a94a9a147de5cfca9d9d099bb88d22447e4a68ed32d3",
        "manifest.json": "b00a3e63067a5af992ba9dadc655fbbf3ff6cc241a06b130d670e8184e520ce5",
    },
    "multi-region": {
        "events.jsonl": "dbd529c0250d4c293cbba397b70c2ac03bc9faa9dd95b2de3772bc2fddebb730",
        "guests.jsonl": "8cc5b247302746cb54e76091ddea307982deb9ac993427ca6bf0e73a7e232965",
        "manifest.json": "8da5ffc9c388af44832f6c447ac76eb9b3e852bf026a16a258c31942604daeb4",
    },
}
EVENTS = 3000


def _installed() -> dict[str, str]:
    found = {name: version(name) for name in ("numpy", "Faker", "orjson")}
    found["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    return found


def _skip_unless_pinned_versions() -> None:
    differ = {k: v for k, v in _installed().items() if PINNED[k] != v}
    if differ:
        pytest.skip(
            "golden bytes were made with "
            + ", ".join(f"{k} {PINNED[k]}" for k in differ)
            + "; installed: "
            + ", ".join(f"{k} {v}" for k, v in differ.items())
            + " (install with `make install`, which uses constraints.txt)"
        )


def _hashes(directory: Path) -> dict[str, str]:
    out = {}
    for p in sorted(directory.iterdir()):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.name == "manifest.json":
            # The manifest names the profile file it was read from: the one part that depends
            # on where the checkout lives. Everything else is hashed as written.
            manifest = orjson.loads(data)
            assert manifest["profile"]["source"].endswith(f"{manifest['profile']['name']}.yaml")
            manifest["profile"]["source"] = "<source>"
            data = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
        out[p.name] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.parametrize(("name", "workers"), [("smoke", 1), ("smoke", 2), ("multi-region", 1)])
def test_dataset_bytes_are_the_golden_ones(tmp_path: Path, name: str, workers: int) -> None:
    _skip_unless_pinned_versions()
    out = make_dataset(tmp_path / "d", name, events=EVENTS, workers=workers)
    assert _hashes(out) == GOLDEN[name]


def test_constraints_pin_the_versions_the_golden_bytes_were_made_with() -> None:
    """constraints.txt and PINNED agree, so `make install` gives the golden bytes."""
    lines = (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    assert {k: pins[k] for k in ("numpy", "Faker", "orjson")} == {
        k: PINNED[k] for k in ("numpy", "Faker", "orjson")
    }
