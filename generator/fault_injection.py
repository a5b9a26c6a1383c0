"""Labelled dirty traffic: duplicates, late and out-of-order delivery, malformed bodies, and a
record of each fault (kind and ref) so a pipeline's output can be checked against the list.

The one home of fault injection for `load --scenario ingest`, `replay` and `generate`. The
clean events all still go out (late or out of order perhaps); duplicates and malformed bodies
are extra copies, so what a target should keep is exactly the clean events, the expected
duplicates are the `dup` and `dup-changed` faults, and the expected rejections the `malformed`.
"""

from __future__ import annotations

import gzip
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import orjson

from generator.events.stored import iso_ms, parse_iso_ms

__all__ = [
    "DIRTY_DIR",
    "FAULTS_FILE",
    "FAULT_HEADER",
    "KINDS",
    "LATE_AFTER",
    "MALFORMED",
    "Delivery",
    "Fault",
    "FaultInjector",
    "FaultMix",
    "StreamFaults",
    "parse_labels",
    "render_label",
    "spoil_line",
    "spoil_object",
    "spoil_wire",
    "write_dirty_copy",
]

# Each kind's share is per clean event.
KINDS = ("dup", "dup-changed", "late", "out-of-order", "malformed")
# The malformed bodies, drawn in turn: broken JSON, the wrong JSON, a valid event spoiled.
MALFORMED = (
    "truncated",
    "not-json",
    "not-an-object",
    "missing-ref",
    "bad-created-at",
    "foreign-client-key",
    "bad-utf8",
)
# The request header that labels a request's injected lines: "LINE:KIND,..." (lines from 1).
# The embedded server counts what it labels apart from unexpected rejections and duplicates.
FAULT_HEADER = "X-Cdpsim-Faults"
FAULTS_FILE = "faults.jsonl"
# A late event goes out after this many later deliveries; a duplicate within DUP_WITHIN.
LATE_AFTER = 500
DUP_WITHIN = 16

# Replay reads 8,192 lines ahead of its oldest unfinished one: a held event must go out sooner.
REPLAY_SWAP = 2_048


def replay_late_after(window: int) -> int:
    """How many later lines a replay holds a late event behind: three quarters of its read-ahead
    window (6,144 of 8,192), the most it can without the reader waiting on the held line; a
    stream shorter than that sends its late events at the end."""
    return max(1, window * 3 // 4)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FaultMix:
    """The share of clean events that get each kind of fault (`dup=0.01,late=0.005,...`)."""

    KINDS = KINDS  # the kinds, for help texts (a class attribute, not a field)
    shares: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> FaultMix:
        shares: dict[str, float] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            kind, _, value = part.partition("=")
            kind = kind.strip()
            if kind not in KINDS:
                raise ValueError(f"{kind!r} is not a fault kind (use {', '.join(KINDS)})")
            try:
                share = float(value)
            except ValueError:
                raise ValueError(f"{part.strip()!r}: give KIND=SHARE, e.g. dup=0.01") from None
            if not 0 <= share <= 1:
                raise ValueError(f"{kind}={value}: a share is between 0 and 1")
            shares[kind] = share
        if not shares:
            raise ValueError(f"{text!r}: give at least one KIND=SHARE, e.g. dup=0.01")
        return cls(tuple((k, shares[k]) for k in KINDS if k in shares))

    def share(self, kind: str) -> float:
        return dict(self.shares).get(kind, 0.0)

    def __str__(self) -> str:
        return ",".join(f"{k}={v!r}" for k, v in self.shares)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: `seq` is the delivery's place in the dirty stream (from 1)."""

    kind: str
    ref: str
    seq: int
    detail: str = ""

    def to_json(self, **more: Any) -> bytes:
        doc: dict[str, Any] = {"seq": self.seq, "kind": self.kind, "ref": self.ref}
        if self.detail:
            doc["detail"] = self.detail
        doc.update(more)
        return orjson.dumps(doc)


@dataclass(frozen=True, slots=True)
class Delivery(Generic[T]):
    """An item to send now; `kind` None for a clean one in its place, else its fault."""

    item: T
    ref: str
    kind: str | None = None
    detail: str = ""

    @property
    def extra(self) -> bool:
        """A copy sent besides the clean event (a duplicate or a malformed body)."""
        return self.kind in ("dup", "dup-changed", "malformed")


@dataclass(slots=True)
class _Held(Generic[T]):
    due: int  # released once this many deliveries have been made
    delivery: Delivery[T]


@dataclass
class FaultInjector(Generic[T]):
    """Turns a stream of items (events, lines, replay steps) into the dirty stream.

    `push(item, group, ref)` gives what to send now; items of one `group` (a guest) keep
    their order unless a fault moves them. `drain()` gives what is still held at the end.
    The random source is the caller's, so the same stream and seed give the same faults.
    """

    mix: FaultMix
    rng: np.random.Generator
    late_after: int = LATE_AFTER
    dup_within: int = DUP_WITHIN
    # An out-of-order event waits this many deliveries at most for its guest's next event (a
    # reader with a bounded window must not wait for ever), then goes out clean in its place;
    # None: until the end. The last event of a guest is never out of order.
    swap_within: int | None = LATE_AFTER
    delivered: int = 0
    faults: list[Fault] = field(default_factory=list)
    _held: deque[_Held[T]] = field(default_factory=deque)
    _swapped: dict[Hashable, Delivery[T]] = field(default_factory=dict)
    _copies: dict[int, list[str]] = field(default_factory=dict)  # id(original) -> copy kinds
    _swap_until: dict[Hashable, int] = field(default_factory=dict)
    _malformed: int = 0

    def __post_init__(self) -> None:
        self._shares = np.array([self.mix.share(k) for k in KINDS])

    def push(self, item: T, group: Hashable, ref: str) -> list[Delivery[T]]:
        out: list[Delivery[T]] = []
        dup, changed, late, swap, malformed = self.rng.random(len(KINDS)) < self._shares
        swap = swap and not late and group not in self._swapped
        first = Delivery(item, ref, "late" if late else "out-of-order" if swap else None)
        # Copies follow their original, whenever that goes out.
        copies = [kind for kind, drawn in (("dup", dup), ("dup-changed", changed)) if drawn]
        if copies:
            self._copies[id(first)] = copies
        if late:
            self._held.append(_Held(self.delivered + self.late_after, first))
        elif swap:
            # Out of order: this one goes out after the guest's next event.
            self._swapped[group] = first
            if self.swap_within is not None:
                self._swap_until[group] = self.delivered + self.swap_within
        else:
            self._deliver(first, out)
        if group in self._swapped and self._swapped[group] is not first:
            self._swap_until.pop(group, None)
            self._deliver(self._swapped.pop(group), out)
        if malformed:
            detail = MALFORMED[self._malformed % len(MALFORMED)]
            self._malformed += 1
            self._deliver(Delivery(item, ref, "malformed", detail), out)
        self._release(out)
        return out

    def drain(self) -> list[Delivery[T]]:
        out: list[Delivery[T]] = []
        for waiting in list(self._swapped.values()):
            # No next event came for its guest: in its place after all, clean.
            clean = Delivery(waiting.item, waiting.ref)
            self._copies[id(clean)] = self._copies.pop(id(waiting), [])
            self._deliver(clean, out)
        self._swapped.clear()
        self._swap_until.clear()
        while self._held:
            self._deliver(self._held.popleft().delivery, out)
        return out

    def _deliver(self, delivery: Delivery[T], out: list[Delivery[T]]) -> None:
        self.delivered += 1
        out.append(delivery)
        if delivery.kind is not None:
            self.faults.append(Fault(delivery.kind, delivery.ref, self.delivered, delivery.detail))
        for kind in self._copies.pop(id(delivery), ()):
            # A resend or a replayed batch: within a few deliveries of the original.
            wait = int(self.rng.integers(0, self.dup_within + 1))
            copy = Delivery(delivery.item, delivery.ref, kind)
            self._held.append(_Held(self.delivered + wait, copy))

    def _release(self, out: list[Delivery[T]]) -> None:
        # A guest whose next event is long in coming: its held one goes out in its place,
        # clean (a reader with a bounded window must not wait on it for ever).
        for group, until in list(self._swap_until.items()):
            if until <= self.delivered:
                del self._swap_until[group]
                waiting = self._swapped.pop(group)
                clean = Delivery(waiting.item, waiting.ref)
                self._copies[id(clean)] = self._copies.pop(id(waiting), [])
                self._deliver(clean, out)
        # Held items are few and nearly in due order; a pass over them is cheap.
        if not self._held:
            return
        keep: deque[_Held[T]] = deque()
        while self._held:
            held = self._held.popleft()
            if held.due <= self.delivered:
                self._deliver(held.delivery, out)
            else:
                keep.append(held)
        self._held = keep

    def take_faults(self) -> list[Fault]:
        """The faults delivered since the last call."""
        faults, self.faults = self.faults, []
        return faults


def spoil_object(event: dict[str, Any], kind: str, detail: str = "") -> dict[str, Any] | bytes:
    """The content a fault sends instead of the clean event (a dict, or raw bytes)."""
    if kind == "dup-changed":
        # The same ref with other content, still a valid event: modified an hour later.
        changed = dict(event)
        try:
            changed["modifiedAt"] = iso_ms(parse_iso_ms(str(event["modifiedAt"])) + 3_600_000)
        except (KeyError, ValueError):
            changed["cdpsimChanged"] = True
        return changed
    if kind != "malformed":
        return event
    raw = orjson.dumps(event)
    if detail == "truncated":
        return raw[: max(1, len(raw) // 2)]
    if detail == "not-json":
        return b"<html>not json: " + raw[:24].replace(b"\n", b" ") + b"</html>"
    if detail == "not-an-object":
        return orjson.dumps([event])
    if detail == "bad-utf8":
        return raw[:-1] + b'\xff\xfe"}'
    spoiled = dict(event)
    if detail == "missing-ref":
        spoiled.pop("ref", None)
    elif detail == "bad-created-at":
        spoiled["createdAt"] = "yesterday at noon"
    elif detail == "foreign-client-key":
        spoiled["clientKey"] = "not-this-tenants-client-key-000"
    return spoiled


def spoil_line(line: bytes, kind: str, detail: str = "") -> bytes:
    """A stored-event JSON line as the fault sends it (one line: never a raw newline)."""
    if kind not in ("dup-changed", "malformed"):
        return line
    spoiled = spoil_object(orjson.loads(line), kind, detail)
    return spoiled if isinstance(spoiled, bytes) else orjson.dumps(spoiled)


def render_label(labels: list[tuple[int, str]]) -> str:
    """The FAULT_HEADER value for (line, kind) pairs."""
    return ",".join(f"{line}:{kind}" for line, kind in labels)


def parse_labels(value: str | bytes | None) -> dict[int, str]:
    """FAULT_HEADER's (line -> kind); what is not understood is ignored."""
    if not value:
        return {}
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    labels: dict[int, str] = {}
    for part in text.split(","):
        line, _, kind = part.strip().partition(":")
        if line.isdigit() and kind in KINDS:
            labels[int(line)] = kind
    return labels


DIRTY_DIR = "dirty"


def write_dirty_copy(directory: Path, mix: FaultMix, seed: int) -> tuple[Path, Path, int]:
    """Beside a dataset's clean `events.jsonl[.gz]`: `dirty/events.jsonl` (the same events with
    the faults injected; out of order means within a browser, so within its guest) and
    `dirty/faults.jsonl` (each fault's kind, ref and line in the dirty file). The clean files
    are not touched. Returns both paths and the number of faults."""
    clean = directory / "events.jsonl"
    if not clean.is_file():
        clean = directory / "events.jsonl.gz"
    out_dir = directory / DIRTY_DIR
    out_dir.mkdir(exist_ok=True)
    events_path, faults_path = out_dir / "events.jsonl", out_dir / FAULTS_FILE
    injector: FaultInjector[bytes] = FaultInjector(
        mix, np.random.default_rng([seed, 0xFA17]), swap_within=None
    )
    count = 0
    opener = gzip.open if clean.suffix == ".gz" else open
    with (
        opener(clean, "rb") as source,
        open(events_path, "wb") as events,
        open(faults_path, "wb") as faults,
    ):

        def emit(deliveries: list[Delivery[bytes]]) -> None:
            nonlocal count
            for d in deliveries:
                events.write((spoil_line(d.item, d.kind, d.detail) if d.kind else d.item) + b"\n")
            for fault in injector.take_faults():
                faults.write(fault.to_json() + b"\n")
                count += 1

        for raw in source:
            line = raw.rstrip(b"\n")
            if not line:
                continue
            event = orjson.loads(line)
            emit(injector.push(line, event.get("browserRef"), str(event.get("ref", ""))))
        emit(injector.drain())
    return events_path, faults_path, count


def spoil_wire(body: dict[str, Any], detail: str) -> bytes:
    """A Stream API request body (browser event or callFlows) made malformed, as bytes."""
    if detail in ("truncated", "not-json", "not-an-object", "bad-utf8"):
        spoiled = spoil_object(body, "malformed", detail)
        return spoiled if isinstance(spoiled, bytes) else orjson.dumps(spoiled)
    broken = dict(body)
    if detail == "missing-ref":  # no browser to file it under
        broken.pop("browser_id", None)
        broken.pop("browserId", None)
    elif detail == "bad-created-at":  # no type the API accepts
        broken["type"] = "" if "type" in broken else None
        broken.pop("friendlyId", None)
    else:  # foreign-client-key
        for key in ("client_key", "clientKey"):
            if key in broken:
                broken[key] = "not-this-tenants-client-key-000"
    return orjson.dumps(broken)


class StreamFaults(Generic[T]):
    """Fault injection for a sender that keeps each guest's order itself (`cdpsim replay`):
    `reorder` gives its steps late and out of order; `copies(ref)` the duplicates and
    malformed copies to send after a step; every fault is appended to `log` (faults.jsonl)."""

    def __init__(
        self, mix: FaultMix, seed: int, log: Path, *, late_after: int = LATE_AFTER
    ) -> None:
        reorder_only = FaultMix(
            tuple((k, v) for k, v in mix.shares if k in ("late", "out-of-order"))
        )
        self.mix = mix
        self._rng = np.random.default_rng([seed, 0x5EED])
        self._order: FaultInjector[T] | None = (
            FaultInjector(
                reorder_only,
                np.random.default_rng([seed, 0x0D3D]),
                late_after=late_after,
                swap_within=REPLAY_SWAP,
            )
            if reorder_only.shares
            else None
        )
        self._copy_shares = np.array([mix.share(k) for k in ("dup", "dup-changed", "malformed")])
        self._malformed = 0
        self._sent = 0
        self._log = log
        self.counts: dict[str, int] = {}
        self._late: set[str] = set()  # refs delivered late, not yet sent

    def late(self, ref: str) -> bool:
        """Whether the step with this ref is a late delivery (asked once, when it is sent)."""
        if ref in self._late:
            self._late.discard(ref)
            return True
        return False

    def reorder(
        self, steps: Iterable[T], group: Callable[[T], Hashable], ref: Callable[[T], str]
    ) -> Iterator[T]:
        if self._order is None:
            yield from steps
            return
        for step in steps:
            for delivery in self._order.push(step, group(step), ref(step)):
                yield self._noted(delivery)
            self._write(self._order.take_faults())
        for delivery in self._order.drain():
            yield self._noted(delivery)
        self._write(self._order.take_faults())

    def _noted(self, delivery: Delivery[T]) -> T:
        if delivery.kind == "late":
            self._late.add(delivery.ref)
        return delivery.item

    def copies(self, ref: str) -> list[tuple[str, str]]:
        """(kind, detail) of each copy to send after the step with this ref; logged."""
        drawn = self._rng.random(3) < self._copy_shares
        out = []
        for kind, hit in zip(("dup", "dup-changed", "malformed"), drawn, strict=True):
            if hit:
                detail = ""
                if kind == "malformed":
                    detail = MALFORMED[self._malformed % len(MALFORMED)]
                    self._malformed += 1
                out.append((kind, detail))
        self._sent += 1
        self._write([Fault(kind, ref, self._sent, detail) for kind, detail in out])
        return out

    def _write(self, faults: list[Fault]) -> None:
        if not faults:
            return
        for fault in faults:
            self.counts[fault.kind] = self.counts.get(fault.kind, 0) + 1
        with open(self._log, "ab") as log:
            log.write(b"".join(f.to_json() + b"\n" for f in faults))
