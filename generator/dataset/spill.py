"""Finding repeats among many keys in little memory: keys are spilled to disk in partitions by
their top bits, and each partition is sorted on its own at the end.

`validate` uses it for event refs (each must be unique) and for sessions that come back after
they ended, where a set in memory would grow with every event. Keys are 64-bit hashes of the
strings (`hash`, stable within one process): two different refs share one with a chance of
about n^2 / 2^65, some 1 in 3 million for 5M events.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = ["RepeatFinder", "Spill"]

_RECORD = np.dtype([("key", "<u8"), ("line", "<i8")])
_PARTITIONS = 64  # files; at the end one is read at a time (5M keys: some 1.3 MB each)
_BUFFER = 1 << 17  # keys held before they go to disk


class RepeatFinder:
    """add(text, line) many times, then `repeats()`: the line of every key seen before."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._keys = array("Q")
        self._lines = array("q")
        # Open while keys come; closed by repeats(), or by the Spill on the way out.
        self._files = [open(directory / f"p{i:02d}", "wb") for i in range(_PARTITIONS)]  # noqa: SIM115

    def add(self, text: str, line: int) -> None:
        self._keys.append(hash(text) & 0xFFFF_FFFF_FFFF_FFFF)
        self._lines.append(line)
        if len(self._keys) >= _BUFFER:
            self._flush()

    def _flush(self) -> None:
        records = np.empty(len(self._keys), dtype=_RECORD)
        records["key"] = np.frombuffer(self._keys, dtype=np.uint64)
        records["line"] = np.frombuffer(self._lines, dtype=np.int64)
        part = records["key"] >> np.uint64(58)  # the top 6 bits: one of 64 partitions
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(_PARTITIONS + 1))
        for p in np.flatnonzero(np.diff(bounds)).tolist():
            self._files[p].write(records[order[bounds[p] : bounds[p + 1]]].tobytes())
        self._keys = array("Q")
        self._lines = array("q")

    def repeats(self) -> Iterator[int]:
        """Lines whose key came before (by line order), partition by partition."""
        self._flush()
        for fh in self._files:
            fh.close()
        for i in range(_PARTITIONS):
            records = np.fromfile(self._dir / f"p{i:02d}", dtype=_RECORD)
            if len(records) < 2:
                continue
            records = records[np.lexsort((records["line"], records["key"]))]
            again = np.flatnonzero(records["key"][1:] == records["key"][:-1]) + 1
            yield from records["line"][again].tolist()


class Spill:
    """A temporary directory for RepeatFinders, removed with its files on exit."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="cdpsim-validate-")
        self._finders: list[RepeatFinder] = []

    def finder(self) -> RepeatFinder:
        d = Path(self._tmp.name) / str(len(self._finders))
        d.mkdir()
        self._finders.append(RepeatFinder(d))
        return self._finders[-1]

    def __enter__(self) -> Spill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for f in self._finders:
            for fh in f._files:
                fh.close()
        self._tmp.cleanup()
