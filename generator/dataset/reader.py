"""Reading a dataset directory back: events, guests and manifest, with errors that name the line."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from generator.errors import CdpsimError

__all__ = ["Dataset", "DatasetError", "open_dataset"]

EVENT_FILES = ("events.jsonl", "events.jsonl.gz")
READ_CHUNK = 1 << 20  # bytes read at a time


class DatasetError(CdpsimError):
    """A dataset that is missing, truncated or corrupted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=1)


class Dataset:
    """A dataset directory written by `cdpsim generate`."""

    def __init__(self, directory: Path, events_path: Path) -> None:
        self.directory = directory
        self.events_path = events_path
        self.guests_path = directory / "guests.jsonl"
        self.manifest_path = directory / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            raise DatasetError(f"{self.manifest_path}: missing") from None
        except orjson.JSONDecodeError as exc:
            raise DatasetError(f"{self.manifest_path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{self.manifest_path}: must hold a JSON object")
        return data

    def events(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, event) for every event, in file order."""
        yield from _json_lines(self.events_path)

    def raw_events(self) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line without newline), for consumers that parse lazily."""
        yield from _raw_lines(self.events_path)

    def guests(self) -> Iterator[tuple[int, dict[str, Any]]]:
        yield from _json_lines(self.guests_path)

    def raw_guests(self) -> Iterator[tuple[int, bytes]]:
        yield from _raw_lines(self.guests_path)


def open_dataset(directory: str | Path) -> Dataset:
    """Find a dataset's files, or raise DatasetError saying what is missing."""
    d = Path(directory)
    if not d.is_dir():
        raise DatasetError(f"{d}: not a directory (expected a dataset made by `cdpsim generate`)")
    found = [d / name for name in EVENT_FILES if (d / name).is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"{d}: holds both events.jsonl and events.jsonl.gz; a dataset has one events file: "
            "remove the one that does not belong"
        )
    if found:
        return Dataset(d, found[0])
    raise DatasetError(f"{d}: no events.jsonl or events.jsonl.gz (not a finished dataset)")


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    line_no = 0
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            pending = b""
            while True:
                chunk = fh.read(READ_CHUNK)
                if not chunk:
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    line_no += 1
                    yield line_no, line
            if pending:
                # A last line without its newline: the file was cut while being written.
                raise DatasetError(
                    f"{path}: line {line_no + 1}: truncated (the file ends mid-line)"
                )
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(
            f"{path}: corrupted or truncated gzip after line {line_no} ({exc})"
        ) from None


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, line in _raw_lines(path):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {line_no}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise DatasetError(f"{path}: line {line_no}: expected a JSON object")
        yield line_no, value
