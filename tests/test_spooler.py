"""The spooler that writes on a thread: order kept, memory bounded, errors not lost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from generator.dataset.spooler import DEPTH, Spooler


def test_writes_land_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out"
    pieces = [b"%d\n" % i for i in range(2000)]
    with open(path, "wb") as fh, Spooler() as spooler:
        for piece in pieces:
            spooler.submit(fh.write, piece)
    assert path.read_bytes() == b"".join(pieces)


def test_submit_blocks_once_depth_calls_wait() -> None:
    gate = threading.Event()
    spooler = Spooler()
    spooler.submit(gate.wait)  # taken by the thread, which then waits on the gate
    for _ in range(DEPTH):
        spooler.submit(lambda: None)
    blocked = threading.Thread(target=spooler.submit, args=(lambda: None,))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # the queue is full: the producer waits
    gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    spooler.drain()


def test_an_error_on_the_thread_reaches_the_caller_and_stops_later_calls() -> None:
    ran: list[int] = []

    def fail() -> None:
        raise OSError(28, "No space left on device")

    spooler = Spooler()
    spooler.submit(ran.append, 1)
    spooler.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        for i in range(100):  # a later submit (or the drain) reports it
            spooler.submit(ran.append, i + 2)
        spooler.drain()
    with pytest.raises(OSError):
        spooler.drain()
    assert ran == [1]  # the calls after the failure were skipped
