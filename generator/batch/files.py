"""Writing a dataset as Batch API files: a guest upsert per identified guest, an order insert per
order, in gzipped JSON-lines files of at most `limit` bytes each, never cut mid-record."""

from __future__ import annotations

import hashlib
import os
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from generator.dataset.entities import Entities, Order, SessionEntity, StoredEvent
from generator.dataset.reader import open_dataset
from generator.errors import CdpsimError
from generator.events.stored import iso_ms

__all__ = [
    "MAX_FILE_BYTES",
    "BatchFiles",
    "BatchSink",
    "export_batch",
    "guest_value",
    "order_value",
    "record_ref",
]

MAX_FILE_BYTES = 50 * 1000 * 1000  # the Batch API's limit on one gzipped file
_PAY = {"Card": "Card", "PayPal": "Paypal", "Voucher": "Voucher", "Other": "Other"}
# Deflate can grow incompressible input by a few bytes per block; gzip adds 18 of its own.
_SLACK = 1024


def record_ref(seed: int, client_key: str, kind: str, key: str) -> str:
    """A record's ref: a UUID version 5 from the dataset's seed, tenant and the record's key."""
    space = uuid.uuid5(uuid.NAMESPACE_URL, f"cdpsim:{seed}:{client_key}")
    return str(uuid.uuid5(space, f"{kind}:{key}"))


def _identifiers(email: str | None, guest_ref: str) -> list[dict[str, str]]:
    if email:
        return [{"provider": "email", "id": email}]
    # A guest who never identified has no identifier CDP knows; the dataset's own guest ref is
    # the only stable key (docs/datalake.md, "Batch files").
    return [{"provider": "cdpsim_guest_ref", "id": guest_ref}]


def guest_value(record: dict[str, Any], first_ms: int, last_ms: int) -> dict[str, Any]:
    email = record["email"]
    return {
        "guestType": "customer",
        "firstSeen": iso_ms(first_ms),
        "lastSeen": iso_ms(last_ms),
        "firstName": record["firstName"],
        "lastName": record["lastName"],
        "gender": "unknown",
        "email": email,
        "language": record["language"].lower()[:2],
        "identifiers": _identifiers(email, record["guestRef"]),
        "extensions": [
            {"name": "ext", "key": "default", "cdpsimGuestRef": record["guestRef"]},
        ],
    }


def order_value(order: Order, email: str | None) -> dict[str, Any]:
    ordered = iso_ms(order.ordered_ms)
    value: dict[str, Any] = {
        "referenceId": order.ref,
        "channel": order.channel,
        "pointOfSale": order.point_of_sale,
        "status": order.status,
        "orderedAt": ordered,
        "currencyCode": order.currency,
        "price": order.price,
    }
    if order.pay_type is not None:
        value["paymentType"] = _PAY.get(order.pay_type, "Other")
        if value["paymentType"] == "Card":
            value["cardType"] = "Visa"
    value["contact"] = {"identifiers": _identifiers(email, order.guest_ref)}
    value["orderItems"] = [
        {
            "type": i.type,
            "productId": i.product_id,
            "name": i.name[:128],
            "orderedAt": ordered,
            "quantity": i.quantity,
            "price": i.price,
            "currencyCode": i.currency,
            "referenceId": i.item_id,
            "status": order.status,
        }
        for i in order.items
    ]
    value["extensions"] = [
        {"name": "ext", "key": "default", "cdpsimGuestRef": order.guest_ref},
    ]
    return value


@dataclass
class BatchFiles:
    directory: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    guests: int = 0
    orders: int = 0


class BatchSink:
    """Records into numbered gzip files, each at most `limit` bytes: a record that might not fit
    starts the next file. The bound is checked against the compressed size so far plus the
    input deflate still holds (flushed when close to the limit, so files come out nearly full)."""

    def __init__(self, directory: Path, limit: int = MAX_FILE_BYTES) -> None:
        if limit < 4 * _SLACK:
            raise CdpsimError(f"batch file limit {limit} bytes is too small", 2)
        self.directory = directory
        self.limit = limit
        self.files: list[dict[str, Any]] = []
        self._open()

    def _open(self) -> None:
        self.name = f"batch-{len(self.files) + 1:05d}.jsonl.gz"
        # Closed by _close: the file outlives this call by design.
        self.fh = open(self.directory / (self.name + ".partial"), "wb")  # noqa: SIM115
        self.packer = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.md5 = hashlib.md5()
        self.written = 0  # compressed bytes out
        self.held = 0  # input bytes given to deflate since its last flush
        self.records = 0

    def _out(self, data: bytes) -> None:
        if data:
            self.fh.write(data)
            self.md5.update(data)
            self.written += len(data)

    def add(self, record: bytes) -> None:
        line = record + b"\n"
        if len(line) + _SLACK > self.limit:
            raise CdpsimError(f"one batch record of {len(line)} bytes exceeds the file limit", 2)
        if self.records and self.written + self.held + len(line) + _SLACK > self.limit:
            self._out(self.packer.flush(zlib.Z_SYNC_FLUSH))
            self.held = 0
            if self.written + len(line) + _SLACK > self.limit:
                self._close()
                self._open()
        self._out(self.packer.compress(line))
        self.held += len(line)
        self.records += 1

    def _close(self) -> None:
        self._out(self.packer.flush())
        self.fh.close()
        os.replace(self.directory / (self.name + ".partial"), self.directory / self.name)
        self.files.append(
            {
                "name": self.name,
                "records": self.records,
                "size": self.written,
                "md5": self.md5.hexdigest(),
            }
        )

    def close(self) -> list[dict[str, Any]]:
        self._close()
        return self.files


def export_batch(
    directory: Path, out: Path | None = None, limit: int = MAX_FILE_BYTES
) -> BatchFiles:
    """The Batch files of the dataset in `directory` (into DIR/batch by default), and their
    list in OUT/manifest.json."""
    dataset = open_dataset(directory)
    manifest = dataset.manifest()
    out = out if out is not None else directory / "batch"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("batch-*.jsonl.gz*"):
        old.unlink()
    seed, key = int(manifest["seed"]), manifest["clientKey"]
    entities = Entities(dataset)
    emails: dict[str, str] = {}
    for ref, raw in entities.guest_records:
        record = orjson.loads(raw)
        if record["type"] == "CUSTOMER":
            emails[ref] = record["email"]
    sink = BatchSink(out, limit)
    result = BatchFiles(out)
    spool = out / "orders.spool"

    # Orders are spooled to disk as they come (the guests go first in the files, and they are
    # known only once every event is read).
    with open(spool, "wb") as spooled:

        def on_order(o: Order) -> None:
            value = order_value(o, emails.get(o.guest_ref))
            line = {
                "ref": record_ref(seed, key, "order", o.ref),
                "schema": "order",
                "mode": "insert",
                "value": value,
            }
            spooled.write(orjson.dumps(line) + b"\n")
            result.orders += 1

        def ignore(_: StoredEvent | SessionEntity) -> None:
            return None

        entities.run(ignore, on_order, ignore)
    for ref, raw in entities.guest_records:
        record = orjson.loads(raw)
        state = entities.guests.get(ref)
        if record["type"] != "CUSTOMER" or state is None:
            continue
        line = {
            "ref": record_ref(seed, key, "guest", ref),
            "schema": "guest",
            "mode": "upsert",
            "value": guest_value(record, state.first_ms, state.last_ms),
        }
        sink.add(orjson.dumps(line))
        result.guests += 1
    with open(spool, "rb") as fh:
        for spooled_line in fh:
            sink.add(spooled_line.rstrip(b"\n"))
    spool.unlink()
    result.files = sink.close()
    (out / "manifest.json").write_bytes(
        orjson.dumps(
            {
                "seed": seed,
                "clientKey": key,
                "limitBytes": limit,
                "guests": result.guests,
                "orders": result.orders,
                "files": result.files,
            },
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )
        + b"\n"
    )
    return result
