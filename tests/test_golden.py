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
        "events.jsonl": "3a7a7742e33185866d576d79290706f27b94d05d69cf9983cc76f4604e0d0785",
        "guests.jsonl": "ef93d9174856c252e396e1f503bf7a10325b37c6d30b06842a078dcb564f92d3",
        "manifest.json": "154f7e69c9c0f589fa38acdf97e6034a153afed958d044b1dd1b0599b1e98499",
    },
    "multi-region": {
        "events.jsonl": "2388d4d582aea214d9abb52db77a3b8a00d602a02dc6e6b9084728a800ae8b60",
        "guests.jsonl": "1485c66b900c717ef1964f2cdb190f22f03e0a5bacfb7d30c68e73ae5eb18a5a",
        "manifest.json": "135c6386d9edeceb6e55912f08c6f27961f48b97e32688620c1f61f72e1906be",
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
