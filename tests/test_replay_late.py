"""Replay's `late` fault: a late event is held back behind thousands of later lines (in a
short replay: to the end) and sent labelled, long after events created well after it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
from conftest import make_dataset

from generator.server.process import EmbeddedServer

SMOKE = Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml"


def test_a_late_event_arrives_after_events_created_well_after_it(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "ds", "smoke", events=1200)
    state = tmp_path / "state.json"
    db = tmp_path / "ledger.sqlite3"
    with EmbeddedServer(profile_path=SMOKE, db_path=db) as server:
        args = [str(dataset), "--target", server.url, "--state", str(state)]
        args += ["--faults", "late=0.01", "--speed", "max", "--no-progress"]
        proc = subprocess.run(
            [sys.executable, "-m", "generator.cli", "replay", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        stats = server.stats()
    assert proc.returncode == 0, proc.stderr
    log = state.with_name("state.json.faults.jsonl").read_bytes().splitlines()
    late = [orjson.loads(x)["ref"] for x in log if orjson.loads(x)["kind"] == "late"]
    assert len(late) >= 3  # 1% of 1,200
    assert stats["faults"]["labelled"].get("late") == len(late)  # sent labelled
    # The dataset's order (time order) against the order the server stored them in.
    events = sorted(dataset.glob("events*.jsonl*"))
    assert events, list(dataset.iterdir())
    rows = [orjson.loads(line) for line in _lines(events[0])]
    # A TRACKING is the server's own, made by a callFlows: stored under a ref of its own.
    refs = [e["ref"] for e in rows if e["type"] != "TRACKING"]
    # The server stores each event under a ref of its own; its answer to a request, kept under
    # the request's idempotency key (the dataset's ref), names it.
    with sqlite3.connect(db) as conn:
        order = dict(conn.execute("SELECT ref, seq FROM events").fetchall())
        answers = conn.execute("SELECT key, body FROM answers WHERE key LIKE '/v1.2/events %'")
        arrival = {
            key.split(" ", 1)[1]: order[orjson.loads(body)["ref"]]
            for key, body in answers.fetchall()
        }
    missing = [r for r in refs if r not in arrival]
    assert not missing  # reconciled: every client event of the dataset stored
    for ref in late:
        if ref not in refs:
            continue  # a late callFlows
        line = refs.index(ref)
        after = refs[line + 1 :]
        # A replay shorter than the hold sends its late events last: behind every event after
        # it in the dataset, but those of its own guest's still queued and the last few in
        # flight. Held 500 lines (as before), an event in the first half would be behind
        # fewer than half of them.
        overtaken = sum(arrival[r] < arrival[ref] for r in after)
        assert overtaken >= 0.9 * len(after) - 20, (ref, line, overtaken, len(after))


def _lines(path: Path) -> list[bytes]:
    import gzip

    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.splitlines()
