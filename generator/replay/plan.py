"""The replay plan: a dataset's stored events as ordered steps, tied to their guest and browser."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from generator.dataset.reader import Dataset, DatasetError, open_dataset
from generator.events.checker import StoredEventChecker
from generator.events.wire import WireRequest, browser_create, call_flow, client_event

__all__ = ["ReplayPlan", "ReplayStep", "browser_key", "session_close_key"]

# CDP's default, for a manifest that does not name its points of sale's timeout.
_DEFAULT_TIMEOUT_MINUTES = 20
# Browser-create keys are derived, not random: a resumed run must send the same key again.
_BROWSER_NAMESPACE = uuid.UUID("6f1c2b9e-5d0a-4c8e-9a51-3b7e2f4d8c10")


def browser_key(browser_ref: str) -> str:
    """The idempotency key of the browser create for a dataset browser."""
    return str(uuid.uuid5(_BROWSER_NAMESPACE, f"browser-create:{browser_ref}"))


def session_close_key(session_ref: str) -> str:
    """The idempotency key of the FORCE_CLOSE that ends a dataset session at the target."""
    return str(uuid.uuid5(_BROWSER_NAMESPACE, f"session-close:{session_ref}"))


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One stored event to replay: `seq` is its line in the events file, 1-based."""

    seq: int
    ref: str
    type: str
    guest: str
    browser_ref: str
    created_ms: int
    event: dict[str, Any]


class ReplayPlan:
    """A checked dataset, ready to be replayed step by step."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.manifest = dataset.manifest()
        self.client_key = _require_str(self.manifest, "clientKey", dataset.manifest_path)
        self.points_of_sale: dict[str, tuple[str, str]] = {}
        self.timeouts: dict[str, float] = {}  # point of sale -> session timeout, seconds
        pos = self.manifest.get("pointsOfSale")
        if not isinstance(pos, dict) or not pos:
            raise DatasetError(f"{dataset.manifest_path}: `pointsOfSale` missing or empty")
        for name, conf in pos.items():
            if not isinstance(conf, dict) or "language" not in conf or "currency" not in conf:
                raise DatasetError(
                    f"{dataset.manifest_path}: pointsOfSale.{name}: needs language and currency"
                )
            self.points_of_sale[name] = (str(conf["language"]), str(conf["currency"]))
            minutes = conf.get("sessionTimeoutMinutes", _DEFAULT_TIMEOUT_MINUTES)
            self.timeouts[name] = 60.0 * (
                minutes if isinstance(minutes, int | float) else _DEFAULT_TIMEOUT_MINUTES
            )
        counts = self.manifest.get("counts")
        if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
            raise DatasetError(f"{dataset.manifest_path}: `counts` missing or not integers")
        self.counts: dict[str, int] = dict(counts)
        self.total = sum(self.counts.values())
        self.owner = self._browser_owners()
        self._checker = StoredEventChecker.for_dataset(self.manifest, self.owner)
        self.fingerprint = self._fingerprint()

    @classmethod
    def open(cls, directory: str | Path) -> ReplayPlan:
        return cls(open_dataset(directory))

    def _browser_owners(self) -> dict[str, str]:
        owners: dict[str, str] = {}
        path = self.dataset.guests_path
        for line_no, guest in self.dataset.guests():
            guest_ref = guest.get("guestRef")
            browsers = guest.get("browsers")
            if not isinstance(guest_ref, str) or not isinstance(browsers, list):
                raise DatasetError(f"{path}: line {line_no}: needs guestRef and browsers")
            for browser in browsers:
                ref = browser.get("browserRef") if isinstance(browser, dict) else None
                if not isinstance(ref, str):
                    raise DatasetError(f"{path}: line {line_no}: a browser without browserRef")
                owners[ref] = guest_ref
        return owners

    def _fingerprint(self) -> str:
        """What identifies this dataset for a checkpoint: its manifest and its events file."""
        digest = hashlib.sha256(self.dataset.manifest_path.read_bytes())
        events = self.dataset.events_path
        digest.update(f"|{events.name}|{events.stat().st_size}".encode())
        return digest.hexdigest()

    def check(self) -> dict[str, int]:
        """Read every event once before anything is sent, so a corrupt dataset sends nothing."""
        seen: dict[str, int] = {}
        for step in self.steps():
            seen[step.type] = seen.get(step.type, 0) + 1
        wanted = {k: v for k, v in self.counts.items() if v}
        if seen != wanted:
            raise DatasetError(
                f"{self.dataset.events_path}: events by type {_fmt(seen)} do not match the "
                f"manifest's counts {_fmt(wanted)} (an incomplete or altered dataset)"
            )
        return seen

    def steps(self, after: int = 0, *, validate: bool = True) -> Iterator[ReplayStep]:
        """Steps in file order (time order), skipping lines up to and including `after`.

        `validate=False` is for a second pass over a dataset that `check()` has passed: the
        per-field checks cost more than the parse, and they run inside the timed send loop.
        """
        path = self.dataset.events_path
        owner = self.owner
        for line_no, raw in self.dataset.raw_events():
            if line_no <= after:
                continue
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"{path}: line {line_no}: not valid JSON ({exc})") from None
            if validate:
                self._validate(path, line_no, event)
            try:
                guest = owner[event["browserRef"]]
                created = dt.datetime.fromisoformat(event["createdAt"])
                step = ReplayStep(
                    line_no,
                    event["ref"],
                    event["type"],
                    guest,
                    event["browserRef"],
                    int(created.timestamp() * 1000),
                    event,
                )
            except (KeyError, TypeError, ValueError):
                raise DatasetError(
                    f"{path}: line {line_no}: not the event that was checked (was the dataset "
                    "changed during the replay?)"
                ) from None
            yield step

    def _validate(self, path: Path, line_no: int, event: Any) -> None:
        """The dataset checker's first problem with the event, as a DatasetError."""
        problem = self._checker.first(event)
        if problem is not None:
            raise DatasetError(f"{path}: line {line_no}: {problem.message}")

    def request(self, step: ReplayStep, browser_id: str) -> WireRequest:
        """The wire request that makes the server store this step's event."""
        if step.type == "TRACKING":
            language, currency = self.points_of_sale[step.event["pointOfSale"]]
            return call_flow(step.event, browser_id, language, currency)
        return client_event(step.event, browser_id)

    def session_timeout_s(self, pos: str) -> float:
        return self.timeouts.get(pos, 60.0 * _DEFAULT_TIMEOUT_MINUTES)

    def session_close(self, event: dict[str, Any], pos: str, browser_id: str) -> WireRequest:
        """A FORCE_CLOSE, as the SDK sends one, for this browser and channel at `pos`."""
        language, currency = self.points_of_sale.get(pos, ("", ""))
        close = {
            "type": "FORCE_CLOSE",
            "channel": event["channel"],
            "clientKey": self.client_key,
            "pointOfSale": pos,
            "arbitraryData": {"language": language, "currency": currency},
        }
        return client_event(close, browser_id)

    def browser_request(self, guest: str) -> WireRequest:
        """A browser create that asks a target able to (the embedded server) to file the new
        browser under the dataset's guest; other targets ignore the hint."""
        return browser_create(self.client_key, guest)


def _require_str(data: dict[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{path}: `{key}` missing")
    return value


def _fmt(counts: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {counts[k]}" for k in sorted(counts)) + "}"
