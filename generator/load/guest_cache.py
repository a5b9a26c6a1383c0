"""A Locust process's cache of simulated guests, and the sequence each user draws its guests from.

User `u` of worker `w` gets guests `u, u + U, u + 2U ...` of the worker's own guest sequence,
where `U` is the plan's peak user count; the sequence is the model's blocks under a seed derived
from (root seed, worker index, u // U). So a user's guests are a pure function of (root seed,
worker index, user serial), no two workers share a guest, and a block of BLOCK_GUESTS guests is
shared by many users instead of being simulated for each one.

Blocks are made elsewhere (in a Locust process: by its simulator, a helper process) one block ahead
of need, so the CPU work stays off the event loop's request path.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import numpy as np

from generator.model.world import BLOCK_GUESTS

__all__ = ["GuestCache", "GuestSequence", "derive_seed"]

T = TypeVar("T")
_KEEP_BLOCKS = 6


def derive_seed(*key: int) -> int:
    """A model seed (0 <= seed < 2**63) from a tuple of non-negative integers."""
    state = np.random.SeedSequence(list(key)).generate_state(2, dtype=np.uint64)
    return int(state[0]) >> 1


class GuestCache(Generic[T]):
    """Blocks of packed guests of one worker, cached and prefetched; unpacked one by one."""

    def __init__(
        self,
        order: Callable[[int, int], list[bytes]],
        unpack: Callable[[bytes], T],
        *,
        root_seed: int,
        worker: int,
        stride: int,
        background: Callable[[Callable[[], list[bytes]]], Callable[[], list[bytes]]] | None = None,
    ) -> None:
        self.order = order  # (seed, block) -> one packed item per guest
        self.unpack = unpack
        self.root_seed = root_seed
        self.worker = worker
        self.stride = max(1, stride)
        self.background = background
        self._blocks: OrderedDict[tuple[int, int], Callable[[], list[bytes]]] = OrderedDict()

    def sequence(self, serial: int) -> GuestSequence[T]:
        return GuestSequence(self, serial)

    def warm(self) -> None:
        """Have the first block ready before the run starts, not during it (this waits)."""
        self._block(0, 0)()

    def guest(self, generation: int, index: int) -> T:
        block, offset = divmod(index, BLOCK_GUESTS)
        items = self._block(generation, block)()
        if self.background is not None and offset >= BLOCK_GUESTS // 2:
            self._block(generation, block + 1)  # prefetch: ready before anyone needs it
        return self.unpack(items[offset % len(items)])

    def _block(self, generation: int, block: int) -> Callable[[], list[bytes]]:
        key = (generation, block)
        ready = self._blocks.get(key)
        if ready is None:
            seed = derive_seed(self.root_seed, self.worker, generation)

            def build() -> list[bytes]:
                return self.order(seed, block)

            ready = self.background(build) if self.background else _now(build)
            self._blocks[key] = ready
            while len(self._blocks) > _KEEP_BLOCKS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return ready


class GuestSequence(Generic[T]):
    """One user's guests, in order: a pure function of (root seed, worker, serial)."""

    def __init__(self, cache: GuestCache[T], serial: int) -> None:
        self.cache = cache
        self.generation, self.column = divmod(serial, cache.stride)
        self.drawn = 0

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        index = self.drawn * self.cache.stride + self.column
        self.drawn += 1
        return self.cache.guest(self.generation, index)


def _now(build: Callable[[], list[bytes]]) -> Callable[[], list[bytes]]:
    items = build()
    return lambda: items
