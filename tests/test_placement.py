"""Chunks written into place by worker processes: offsets from earlier sizes, no hang on failure."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from generator.dataset.placement import ChunkFailed, Placement

CTX = mp.get_context("fork")


def _claim_and_write(placement: Placement, k: int, text: bytes, result: mp.Queue) -> None:
    try:
        placement.write([text], placement.claim(k, len(text)))
        result.put(("ok", k))
    except ChunkFailed as exc:
        result.put(("failed", str(exc)))


def test_later_chunks_wait_for_earlier_sizes_and_land_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"")
    texts = [b"first chunk\n", b"", b"third, a longer chunk\n", b"4th\n"]
    placement = Placement(CTX, out, len(texts))
    result: mp.Queue = CTX.Queue()
    # Started last chunk first: each must wait for the sizes before it.
    procs = [
        CTX.Process(target=_claim_and_write, args=(placement, k, texts[k], result))
        for k in reversed(range(len(texts)))
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(20)
    assert sorted(result.get(timeout=5) for _ in texts) == [("ok", k) for k in range(len(texts))]
    assert out.read_bytes() == b"".join(texts)


def test_a_failed_chunk_stops_the_ones_after_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"")
    placement = Placement(CTX, out, 3)
    result: mp.Queue = CTX.Queue()
    waiting = CTX.Process(target=_claim_and_write, args=(placement, 2, b"late\n", result))
    waiting.start()
    placement.claim(0, 10)
    placement.fail(1)
    waiting.join(20)
    assert not waiting.is_alive()
    status, message = result.get(timeout=5)
    assert status == "failed" and "earlier chunk failed" in message
    with pytest.raises(ChunkFailed):
        placement.claim(2, 5)
