"""Where guests are simulated and compiled for a Locust process: in a helper process of its own.

The model's CPU work must not share the GIL with the event loop that times requests, so each
Locust process that sends traffic starts one helper (`python -m generator.load.guest_simulator`) and
orders blocks from it over a pipe. A block comes back as one packed item per guest, which the
user unpacks only when it takes that guest, so no single step stalls the loop for long.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from generator.events.history import GuestHistory, guest_histories
from generator.lifecycle import die_with_parent, popen_child
from generator.load.journeys import Journey, JourneyCompiler
from generator.profile import Profile, load_profile

__all__ = ["Codec", "GuestSimulator", "codec_for"]

_LENGTH = struct.Struct("<Q")

Codec = tuple[Callable[[GuestHistory], bytes], Callable[[bytes], Any]]


def codec_for(name: str, profile: Profile, *, think_time_scale: float, max_think: float) -> Codec:
    """(pack, unpack) for a cache: pack runs where the guests are made, unpack where used."""
    if name == "journeys":
        compiler = JourneyCompiler(profile, think_time_scale=think_time_scale, max_think=max_think)
        return (lambda h: compiler.compile(h).pack()), Journey.unpack
    if name == "lines":
        # One guest's stored events as JSON lines; orjson never writes a raw newline.
        return (lambda h: b"\n".join(orjson.dumps(e) for e in h.events)), _lines
    raise ValueError(f"unknown codec_for {name!r}")


def _lines(packed: bytes) -> list[bytes]:
    return packed.split(b"\n") if packed else []


def simulate_packed(
    profile: Profile, pack: Callable[[GuestHistory], bytes], seed: int, block: int
) -> list[bytes]:
    return [pack(h) for h in guest_histories(profile, seed=seed, blocks=(block,))]


class GuestSimulator:
    """The parent's side: one helper process, one order at a time (callers queue on a lock)."""

    def __init__(
        self, profile_path: Path, name: str, *, think_time_scale: float, max_think: float
    ) -> None:
        # Imported here: only a Locust process needs gevent's cooperative pipes and locks.
        from gevent.lock import Semaphore

        self._lock = Semaphore()
        self._proc = popen_child(
            [
                sys.executable,
                "-m",
                "generator.load.guest_simulator",
                str(profile_path),
                name,
                repr(think_time_scale),
                repr(max_think),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def order(self, seed: int, block: int) -> list[bytes]:
        """A block's packed guests; waits cooperatively for the helper to make them."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        with self._lock:
            proc.stdin.write(f"{seed} {block}\n".encode())
            proc.stdin.flush()
            head = proc.stdout.read(_LENGTH.size)
            if len(head) < _LENGTH.size:
                raise RuntimeError(f"the guest simulator (pid {proc.pid}) stopped")
            items: list[bytes] = pickle.loads(proc.stdout.read(_LENGTH.unpack(head)[0]))
            return items

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def main(argv: list[str]) -> int:
    """The helper: reads `seed block` lines, answers each with a length-prefixed pickle."""
    path, name, scale, max_think = argv
    # A terminal's Ctrl-C reaches the whole process group: the helper ends with its Locust
    # process (stdin closed, or the parent gone), never on its own mid-block.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        # Work a block ahead at low priority: the target and the users that time it come first,
        # and the block is wanted only when half the current one is used.
        os.nice(10)
    profile = load_profile(path)
    pack, _ = codec_for(name, profile, think_time_scale=float(scale), max_think=float(max_think))
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        seed, block = (int(x) for x in line.split())
        payload = pickle.dumps(simulate_packed(profile, pack, seed, block), 5)
        out.write(_LENGTH.pack(len(payload)))
        out.write(payload)
        out.flush()
    return 0


if __name__ == "__main__":
    die_with_parent()
    sys.exit(main(sys.argv[1:]))
