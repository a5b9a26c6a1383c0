"""The embedded server's Batch API end to end: auth, checksum and size, error logs, the ledger,
and `cdpsim replay --via batch` killed midway then resumed, every record stored once."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import make_dataset

from generator.batch.files import export_batch
from generator.server.process import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "profiles" / "smoke.yaml"
CDPSIM = [str(Path(sys.executable).with_name("cdpsim"))]
ENV = {**os.environ, "COLUMNS": "400"}
TOKEN = "test-token-0123456789abcdef"
KEY = "SmokeTestKey0000000000000000000A"


def _call(
    server: EmbeddedServer,
    method: str,
    path: str,
    body: bytes = b"",
    auth: tuple[str, str] | None = (KEY, TOKEN),
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sent = dict(headers or {})
    if auth is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    conn.request(method, path, body=body, headers=sent)
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, data


def _upload(
    server: EmbeddedServer, content: bytes, declared: bytes | None = None
) -> dict[str, Any]:
    ref = str(uuid.uuid4())
    spec = {"checksum": hashlib.md5(declared or content).hexdigest(), "size": len(content)}
    code, data = _call(server, "PUT", f"/v2/batches/{ref}", orjson.dumps(spec))
    assert code == 201, data
    view = orjson.loads(data)
    assert view["status"]["code"] == "uploading" and view["location"]["href"]
    md5 = base64.b64encode(hashlib.md5(content).digest()).decode()
    code, _ = _call(
        server,
        "PUT",
        view["location"]["href"].split(str(server.port), 1)[1],
        content,
        auth=None,
        headers={"Content-Md5": md5, "Content-Type": "application/gzip"},
    )
    assert code == 200
    for _ in range(500):
        code, data = _call(server, "GET", f"/v2/batches/inspect/{ref}")
        view = orjson.loads(data)
        if view["status"]["code"] not in ("uploading", "processing"):
            return view
        time.sleep(0.02)
    raise AssertionError("the batch never finished")


def _records(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM batch_records").fetchone()[0])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Half a dozen small files: enough to kill the replay between two of them.
    out = make_dataset(tmp_path_factory.mktemp("batchapi"), "smoke", days=1, guests=200)
    export_batch(out, limit=6_000)
    return out


def test_auth_checksum_status_and_error_log(tmp_path: Path) -> None:
    with EmbeddedServer(profile_path=SMOKE, extra_args=["--api-token", TOKEN]) as server:
        ref = str(uuid.uuid4())
        assert _call(server, "PUT", f"/v2/batches/{ref}", b"{}", auth=None)[0] == 401
        assert _call(server, "PUT", f"/v2/batches/{ref}", b"{}", auth=(KEY, "wrong"))[0] == 401
        good = {
            "ref": str(uuid.uuid4()),
            "schema": "guest",
            "mode": "upsert",
            "value": {
                "guestType": "customer",
                "email": "a.b@example.com",
                "identifiers": [{"provider": "email", "id": "a.b@example.com"}],
            },
        }
        bad_mode = {**good, "ref": str(uuid.uuid4()), "mode": "insert"}
        no_identity = {**good, "ref": str(uuid.uuid4()), "value": {"guestType": "customer"}}
        content = gzip.compress(
            b"".join(orjson.dumps(r) + b"\n" for r in (good, bad_mode, no_identity))
        )
        corrupted = _upload(server, content, declared=b"something else")
        assert corrupted["status"]["code"] == "corrupted"
        view = _upload(server, content)
        assert view["status"]["code"] == "error" and view["file_uploaded"]
        code, log = _call(server, "GET", view["status"]["log"].split(str(server.port), 1)[1])
        assert code == 200
        failures = [orjson.loads(x) for x in gzip.decompress(log).splitlines()]
        assert {(f["ref"], f["code"]) for f in failures} == {
            (bad_mode["ref"], 402),
            (no_identity["ref"], 400),
        }
        assert "Identity information missing" in {f["message"] for f in failures}
        # The same records again: acknowledged, stored once.
        assert _upload(server, content)["status"]["code"] == "error"
        assert _records(server.db_path) == 1
        stderr = server._log_tail(50)
        assert TOKEN not in stderr


def test_replay_via_batch_killed_midway_then_resumed(tmp_path: Path, dataset: Path) -> None:
    files = orjson.loads((dataset / "batch" / "manifest.json").read_bytes())["files"]
    total = sum(f["records"] for f in files)
    assert len(files) >= 4
    state = tmp_path / "state.json"
    # A slow server, so the replay is still running when it is killed.
    args = ["--api-token", TOKEN, "--latency-ms", "40", "--fail-rate", "0.1"]
    with EmbeddedServer(profile_path=SMOKE, extra_args=args) as server:
        cmd = [
            *CDPSIM,
            "replay",
            str(dataset),
            "--target",
            server.url,
            "--via",
            "batch",
            "--api-token",
            TOKEN,
            "--state",
            str(state),
            "--no-progress",
        ]
        first = subprocess.Popen(
            cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if state.exists() and orjson.loads(state.read_bytes())["files"]:
                    break
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.wait()
        done = len(orjson.loads(state.read_bytes())["files"])
        assert 0 < done < len(files)
        again = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and "--resume" in again.stderr
        resumed = subprocess.run(
            [*cmd, "--resume"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
        )
        assert resumed.returncode == 0, resumed.stderr
        report = orjson.loads(resumed.stdout.strip().splitlines()[-1])
        assert report["records"] == total and report["failedRecords"] == 0
        assert set(report["statuses"].values()) == {"success"}
        assert _records(server.db_path) == total
        with sqlite3.connect(server.db_path) as conn:
            kinds = dict(conn.execute("SELECT schema, count(*) FROM batch_records GROUP BY schema"))
    manifest = orjson.loads((dataset / "manifest.json").read_bytes())
    assert kinds["guest"] == manifest["guests"]["customers"]
    # One order per sale (PURCHASED or PAYMENT_PENDING, stored PROCESSED; later statuses of
    # an order and FAILED checkouts are none).
    sales = sum(
        1
        for line in (dataset / manifest["eventsFile"]).read_bytes().splitlines()
        if b'"type":"CHECKOUT","status":"PROCESSED"' in line
        and (b'"status":"PAYMENT_PENDING"' in line or b'"status":"PURCHASED"' in line)
    )
    assert kinds["order"] == sales > 0


def test_processing_commits_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of several chunks (validated while the one before commits): every good record
    stored once, a ref repeated across chunks refused, failures logged with their line."""
    import generator.server.batch as batch

    monkeypatch.setattr(batch, "_CHUNK", 7)
    service = batch.BatchService(tmp_path / "ledger.sqlite3", KEY, TOKEN, lambda: "http://x")
    service.open()
    records = []
    for i in range(40):
        email = f"g{i}@example.com"
        value = {"guestType": "customer", "identifiers": [{"provider": "email", "id": email}]}
        records.append(
            {"ref": str(uuid.uuid4()), "schema": "guest", "mode": "upsert", "value": value}
        )
    records[30] = {**records[3]}  # the same ref again, four chunks later
    records[12] = {**records[12], "mode": "insert"}
    ref = str(uuid.uuid4())
    body = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records))
    (service.files / f"{ref}.jsonl.gz").write_bytes(body)
    service.conn.execute(
        "INSERT INTO batches (ref, checksum, size, status, created_ms, modified_ms) "
        "VALUES (?, ?, ?, 'processing', 0, 0)",
        (ref, hashlib.md5(body).hexdigest(), len(body)),
    )
    service._process_file(ref)
    assert service.stored_records() == 38
    view = service._view(service._row(ref) or ())
    assert view["status"]["code"] == "error"
    log = gzip.decompress((service.files / f"{ref}.log.jsonl.gz").read_bytes())
    assert sorted(orjson.loads(x)["line"] for x in log.splitlines()) == [13, 31]
    service._process_file(ref)  # processed again (a restart): nothing stored twice
    assert service.stored_records() == 38
    service.close()
