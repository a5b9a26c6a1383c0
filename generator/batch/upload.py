"""Uploading a dataset's Batch files to a Batch API: one file at a time, each checked to have
succeeded before the next, failed records read from the error log, resumable from a state file."""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from generator.batch.files import export_batch, record_ref
from generator.dataset.reader import open_dataset
from generator.endpoint import answer_reason, parse_endpoint
from generator.errors import CdpsimError
from generator.redaction import mask_key

__all__ = ["UploadResult", "upload_dataset"]

_RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass
class UploadResult:
    state: Path
    files: int = 0
    uploaded: int = 0  # files finished in this run
    records: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # file name -> final status

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "uploadedThisRun": self.uploaded,
            "records": self.records,
            "failedRecords": len(self.failed),
            "failures": self.failed[:20],
            "statuses": self.statuses,
            "state": str(self.state),
        }


class _Client:
    """A keep-alive HTTP client to one target, retrying what a busy server may answer."""

    def __init__(self, target: str, auth: str, timeout: float, retries: int = 8) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise CdpsimError(f"--target {target!r}: expected http://host:port", 2)
        self.host, self.port = parts.hostname, parts.port or 80
        self.auth = auth
        self.timeout = timeout
        self.retries = retries
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        path = urlsplit(url).path if url.startswith("http") else url
        sent = {"Authorization": self.auth, **(headers or {})}
        for attempt in range(self.retries + 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(
                        self.host, self.port, timeout=self.timeout
                    )
                self.conn.request(method, path, body=body, headers=sent)
                answer = self.conn.getresponse()
                data = answer.read()
                if answer.status not in _RETRYABLE or attempt == self.retries:
                    return answer.status, data
                wait = float(answer.getheader("retry-after") or 0.1 * 2**attempt)
            except (OSError, http.client.HTTPException) as exc:
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == self.retries:
                    raise CdpsimError(
                        f"the Batch API at {self.host}:{self.port}: {exc}", 4
                    ) from None
                wait = 0.1 * 2**attempt
            time.sleep(min(wait, 5.0))
        raise AssertionError("unreachable")


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def upload_dataset(
    directory: Path,
    target: str,
    token: str,
    *,
    state: Path | None = None,
    resume: bool = False,
    allow_remote: bool = False,
    timeout: float = 60.0,
    poll_s: float = 0.02,
    on_file: Callable[[str, str], None] | None = None,
) -> UploadResult:
    """Upload DIR/batch's files (written first if missing) to `target`, one at a time."""
    # The same checks, and exit codes, as the Stream replay: a URL that cannot be used is 2,
    # nothing listening there is 4.
    endpoint = parse_endpoint(
        target,
        option="--target",
        allow_remote=allow_remote,
        why_local="replay uploads a whole dataset",
    )
    if endpoint.tls:
        raise CdpsimError(f"--target {target!r}: the Batch upload speaks http:// only", 2)
    manifest = open_dataset(directory).manifest()
    endpoint.check_reachable(timeout=3.0, what="; nothing was uploaded")
    key = manifest["clientKey"]
    batch_dir = directory / "batch"
    if not (batch_dir / "manifest.json").exists():
        export_batch(directory)
    files = orjson.loads((batch_dir / "manifest.json").read_bytes())["files"]
    state_path = state or directory.with_name(directory.name + ".batch-state.json")
    saved: dict[str, Any] = {"files": {}}
    if state_path.exists():
        if not resume:
            raise CdpsimError(
                f"{state_path} exists from an earlier run: pass --resume to continue it, "
                "or remove it to start again",
                1,
            )
        saved = orjson.loads(state_path.read_bytes())
    auth = "Basic " + base64.b64encode(f"{key}:{token}".encode()).decode()
    client = _Client(endpoint.url, auth, timeout)
    result = UploadResult(state_path, files=len(files))
    for f in files:
        name = f["name"]
        done = saved["files"].get(name)
        if done is not None and done.get("status") in ("success", "error"):
            result.statuses[name] = done["status"]
            result.records += f["records"]
            result.failed += done.get("failed", [])
            continue
        ref = record_ref(int(manifest["seed"]), key, "batch", f"{name}:{f['md5']}")
        status, failed = _one_file(client, batch_dir / name, f, ref, poll_s)
        if status == "corrupted":
            raise CdpsimError(
                f"{name}: the target found the upload corrupted three times "
                f"(batch {ref}, token {mask_key(token)})",
                4,
            )
        saved["files"][name] = {"ref": ref, "status": status, "failed": failed}
        _save(state_path, saved)
        result.statuses[name] = status
        result.records += f["records"]
        result.failed += failed
        result.uploaded += 1
        if on_file is not None:
            on_file(name, status)
    return result


def _one_file(
    client: _Client, path: Path, spec: dict[str, Any], ref: str, poll_s: float
) -> tuple[str, list[dict[str, Any]]]:
    """Create (or find) the batch, upload until it is not corrupted, wait for the outcome."""
    body = orjson.dumps({"checksum": spec["md5"], "size": spec["size"]})
    for _ in range(3):
        code, data = client.request("PUT", f"/v2/batches/{ref}", body, _JSON)
        if code not in (200, 201):
            raise CdpsimError(f"PUT /v2/batches/{ref}: {answer_reason(code, data)}", 4)
        view = orjson.loads(data)
        if view["status"]["code"] in ("uploading", "corrupted"):
            content = path.read_bytes()
            md5 = base64.b64encode(bytes.fromhex(spec["md5"])).decode()
            code, data = client.request(
                "PUT",
                view["location"]["href"],
                content,
                {
                    "x-amz-server-side-encryption": "AES256",
                    "Content-Md5": md5,
                    "Content-Type": "application/gzip",
                },
            )
            if code != 200:
                raise CdpsimError(f"upload of {path.name}: {answer_reason(code, data)}", 4)
        while True:
            code, data = client.request("GET", f"/v2/batches/{ref}")
            if code != 200:
                raise CdpsimError(f"GET /v2/batches/{ref}: {answer_reason(code, data)}", 4)
            view = orjson.loads(data)
            status = view["status"]["code"]
            if status in ("success", "error", "corrupted"):
                break
            time.sleep(poll_s)
        if status == "success":
            return status, []
        if status == "error":
            code, log = client.request("GET", view["status"]["log"])
            if code != 200:
                raise CdpsimError(f"error log of batch {ref}: {answer_reason(code, log)}", 4)
            lines = gzip.decompress(log).splitlines()
            return status, [{**orjson.loads(x), "file": path.name} for x in lines]
    return "corrupted", []


_JSON = {"Content-Type": "application/json"}
