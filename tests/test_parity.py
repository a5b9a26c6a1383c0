"""The byte-template path writes exactly `orjson.dumps` of the dict path, events and guests alike.

`events/lines.py` (what `generate` writes) and `events/render.py` (what the in-memory routes
yield) describe the same events twice; these tests hold the two copies together, byte for byte,
for every bundled profile and for Hypothesis-drawn ones. The byte path is driven as the dataset
writer drives it: blocks from `dataset.plan`, rows filed and rebased as `parts.py` files them,
sorted by `sort_rows`, rendered a slice at a time as `chunks.py` renders them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import PROFILES, make_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import generator.dataset.plan as dataset_plan
from generator.dataset.plan import PlanCache, blocks_of, make_plan
from generator.events.lines import ROW_DTYPE, block_rows, guest_lines, render_rows, sort_rows
from generator.events.render import BlockRenderer
from generator.model.block import BlockFacts
from generator.profile import Channel, Profile, load_profile, parse_profile

BUNDLED = sorted(p.stem for p in PROFILES.glob("*.yaml"))


def _simulated(profile: Profile, guests: int, days: float | None) -> tuple[BlockRenderer, list]:
    cache = PlanCache()
    plan = make_plan(
        profile, seed=None, days=days, guests=guests, events=None, gzip=False, cache=cache
    )
    renderer = cache.renderer(profile, plan)
    world = renderer.world
    return renderer, [cache.simulate(world, b) for b in blocks_of(world, (1, 1), 0, 1)]


def _byte_events(renderer: BlockRenderer, blocks: list[BlockFacts], slice_size: int) -> bytes:
    """Every block's rows in one bucket, CONFIRM carts rebased as the parts are joined, sorted
    and rendered a slice at a time: the path of `parts.py` then `chunks.py`."""
    parts, blobs, base = [], [], 0
    for facts in blocks:
        rows, extras = block_rows(renderer, facts)
        rows["extra"][rows["extra_len"] > 0] += base
        base += len(extras)
        parts.append(rows)
        blobs.append(extras)
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=ROW_DTYPE)
    kept = rows[sort_rows(rows)]
    blob = b"".join(blobs)
    return b"".join(
        b"".join(render_rows(renderer, kept[lo : lo + slice_size], blob))
        for lo in range(0, len(kept), slice_size)
    )


def _dict_events(renderer: BlockRenderer, blocks: list[BlockFacts]) -> bytes:
    events = [e for facts in blocks for _, e in renderer.events(facts)]
    events.sort(key=lambda e: (e["createdAt"], e["ref"]))
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _check_events(renderer: BlockRenderer, blocks: list[BlockFacts], slice_size: int) -> int:
    got = _byte_events(renderer, blocks, slice_size)
    want = _dict_events(renderer, blocks)
    _same_lines(got, want)
    return want.count(b"\n")


def _check_guests(renderer: BlockRenderer, blocks: list[BlockFacts]) -> int:
    n = 0
    for facts in blocks:
        got = b"".join(line + b"\n" for line in guest_lines(renderer, facts))
        records = list(renderer.guests(facts))
        assert [i for i, _ in records] == list(
            range(facts.first_guest, facts.first_guest + len(records))
        )
        _same_lines(got, b"".join(orjson.dumps(g) + b"\n" for _, g in records))
        n += len(records)
    return n


def _same_lines(got: bytes, want: bytes) -> None:
    """Equal bytes; if not, the first line that differs, both ways, so the failure says where."""
    if got == want:
        return
    a, b = got.split(b"\n"), want.split(b"\n")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            raise AssertionError(f"line {i + 1} differs:\n bytes: {x!r}\n dicts: {y!r}")
    raise AssertionError(f"{len(a) - 1} byte-path lines, {len(b) - 1} dict-path lines")


def test_block_order_is_created_then_ref() -> None:
    """The dict path keeps a cart in the block's own order; that order is the file's order."""
    renderer, blocks = _simulated(load_profile(PROFILES / "smoke.yaml"), 3000, None)
    for facts in blocks:
        rows, _ = block_rows(renderer, facts)
        assert (sort_rows(rows) == np.arange(len(rows))).all()


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_profile_byte_path_equals_dict_path(name: str) -> None:
    profile = load_profile(PROFILES / f"{name}.yaml")
    # Two blocks (the second partial), so rows of several blocks are sorted together.
    renderer, blocks = _simulated(profile, 2048 + 300, min(profile.days, 3.0))
    assert len(blocks) == 2
    events = _check_events(renderer, blocks, slice_size=5_000)
    assert events > 1000
    # Small uneven slices: each slice makes its own templates and digit widths.
    _check_events(renderer, blocks[1:], slice_size=97)
    assert _check_guests(renderer, blocks) == 2048 + 300


def test_generated_events_file_is_the_dict_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: `generate`'s events.jsonl (cut, buckets, workers) is the dict path, sorted."""
    # Small buckets, so that the cut falls inside one of several (the plan travels to workers).
    monkeypatch.setattr(dataset_plan, "BUCKET_TARGET", 4_000)
    profile = load_profile(PROFILES / "multi-region.yaml")
    out = make_dataset(tmp_path / "d", profile, events=36_000, workers=2)
    plan = make_plan(profile, seed=None, days=None, guests=None, events=36_000, gzip=False)
    cache = PlanCache()
    renderer = cache.renderer(profile, plan)
    blocks = [cache.simulate(renderer.world, b) for b in range(renderer.world.blocks)]
    assert plan.buckets > 5 and renderer.world.blocks > 1
    want = _dict_events(renderer, blocks).split(b"\n")[:36_000]
    _same_lines((out / "events.jsonl").read_bytes(), b"\n".join([*want, b""]))


# Names a template must escape as orjson does: quotes, backslashes, controls, non-ASCII.
_TEXT = st.text(
    alphabet=st.sampled_from(list('aZ09 _-/"\\\t\x01é€😀ßİ')), min_size=1, max_size=8
).filter(lambda s: s.strip() == s and s != "")
_NO_SPACE = st.text(alphabet=st.sampled_from(list('aZ09_-/."\\é€😀')), min_size=1, max_size=10)
_LOCALES = ["en_US", "de_DE", "ja_JP", "fr_FR", "zz_ZZ"]
_PAGES = ["home", "category", "product", "search", "cart"]


def _split(draw: st.DrawFn, k: int) -> list[float]:
    raw = draw(st.lists(st.integers(1, 10), min_size=k, max_size=k))
    weights = [w / sum(raw) for w in raw]
    weights[-1] = 1 - sum(weights[:-1])
    return weights


@st.composite
def profiles(draw: st.DrawFn) -> dict[str, Any]:
    """Any profile `generator/profile` accepts, within sizes a test can simulate quickly."""
    pos_names = draw(st.lists(_NO_SPACE, min_size=1, max_size=3, unique=True))
    pos = [
        {
            "name": name,
            "channels": draw(
                st.lists(st.sampled_from([c.value for c in Channel]), min_size=1, max_size=3).map(
                    lambda cs: list(dict.fromkeys(cs))
                )
            ),
            "language": draw(st.sampled_from(["EN", "DE", "JA", "FR"])),
            "currency": draw(st.sampled_from(["EUR", "USD", "JPY"])),
            "timezone": draw(st.sampled_from(["UTC", "Europe/Dublin", "Asia/Tokyo"])),
            "sessionTimeoutMinutes": draw(st.integers(2, 90)),
            "share": draw(st.floats(0.2, 4)),
            "locale": draw(st.sampled_from(_LOCALES)),
        }
        for name in pos_names
    ]
    total = sum(p["share"] for p in pos)  # shares of a whole: they sum to 1
    for p in pos:
        p["share"] /= total
    n_types = draw(st.integers(1, 4))
    types = [f"t{i}" for i in range(n_types)]
    catalog = [
        {
            "type": t,
            "name": draw(_TEXT),
            "items": draw(st.integers(1, 12)),
            "priceRange": sorted(draw(st.lists(st.floats(0.01, 999), min_size=2, max_size=2))),
            "weight": draw(st.floats(0.1, 5)),
        }
        for t in types
    ]
    # Every goal differs, and one type stays organic.
    goals = draw(st.lists(st.sampled_from(types), max_size=n_types - 1, unique=True))
    flows = []
    for i, goal in enumerate(goals):
        k = draw(st.integers(1, 4))
        flows.append(
            {
                "friendlyId": f"flow_{i}_{draw(st.sampled_from(['a', 'x9', 'z_z']))}",
                "kind": draw(st.sampled_from(["experience", "experiment"])),
                "triggerPages": draw(
                    st.lists(st.sampled_from([*_PAGES, "checkout"]), min_size=1, max_size=3).map(
                        lambda ps: list(dict.fromkeys(ps))
                    )
                ),
                "triggerProductTypes": draw(st.lists(st.sampled_from(types), unique=True)),
                "trafficAllocation": draw(st.floats(0.05, 1)),
                "goalProductType": goal,
                "attributionHours": draw(st.sampled_from([1, 3, 24, 72, 168])),
                "decisionTimeMs": {
                    "median": draw(st.floats(0.5, 5000)),
                    "sigma": draw(st.floats(0, 2)),
                },
                "sameSessionConversion": draw(st.one_of(st.none(), st.floats(0, 1))),
                "conversionLagHours": draw(
                    st.one_of(
                        st.none(),
                        st.fixed_dictionaries(
                            {"median": st.floats(0.01, 500), "sigma": st.floats(0, 3)}
                        ),
                    )
                ),
                "variants": [
                    {"name": f"v{j}", "weight": w, "conversionRate": draw(st.floats(0, 1))}
                    for j, w in enumerate(_split(draw, k))
                ],
            }
        )
    landing_pages = draw(st.lists(st.sampled_from(_PAGES), min_size=1, unique=True))
    transitions = {
        page: dict(zip(nxt, [w * 0.9 for w in _split(draw, len(nxt))], strict=True))
        for page in draw(st.lists(st.sampled_from(_PAGES), unique=True))
        if (nxt := draw(st.lists(st.sampled_from(_PAGES), min_size=1, max_size=3, unique=True)))
    }
    rate = st.floats(0, 1)
    return {
        "name": "parity",
        "seed": draw(st.integers(0, 2**40)),
        "clientKey": draw(st.sampled_from(["ParityKey00000000000000000000000", "A" * 32])),
        "start": draw(st.sampled_from(["2025-03-29T12:00:00Z", "2024-12-31T23:59:59.999Z"])),
        "days": draw(st.floats(0.05, 3)),
        "pointsOfSale": pos,
        "population": {
            "guests": 100,
            "browsersPerGuest": _split(draw, draw(st.integers(1, 3))),
            "sessionsPerWeek": draw(st.floats(1, 60)),
            "activitySigma": draw(st.floats(0, 2)),
            "identifyShare": draw(rate),
        },
        "behaviour": {
            "landing": dict(zip(landing_pages, _split(draw, len(landing_pages)), strict=True)),
            "transitions": transitions,
            "maxPages": draw(st.integers(1, 60)),
            "pageGapSeconds": {"median": draw(st.floats(1, 600)), "sigma": draw(st.floats(0, 2))},
            "addToCartRate": draw(rate),
            "goalAddToCartRate": draw(rate),
            "organicPurchaseRate": draw(rate),
            "clearCartRate": draw(rate),
            "forceCloseRate": draw(rate),
            "sameSessionConversion": draw(rate),
            "catalog": catalog,
        },
        "flows": flows,
    }


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=profiles(), guests=st.integers(1, 400), slice_size=st.integers(1, 300))
def test_drawn_profile_byte_path_equals_dict_path(
    data: dict[str, Any], guests: int, slice_size: int
) -> None:
    profile = parse_profile(data, source="parity")
    renderer, blocks = _simulated(profile, guests, None)
    _check_events(renderer, blocks, slice_size)
    assert _check_guests(renderer, blocks) == guests


def test_profile_strategy_reaches_every_event_type() -> None:
    """The drawn profiles are not all trivial: over a few draws every event type shows up."""
    seen: set[str] = set()

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=profiles())
    def collect(data: dict[str, Any]) -> None:
        renderer, blocks = _simulated(parse_profile(data, source="parity"), 200, None)
        seen.update(e["type"] for facts in blocks for _, e in renderer.events(facts))

    collect()
    from generator.events.types import EventType

    assert seen == {t.name for t in EventType}


def test_a_changed_template_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: one changed constant in the dict path shows as a difference."""
    import generator.events.render as render

    renderer, blocks = _simulated(load_profile(PROFILES / "smoke.yaml"), 200, None)
    original = render.envelope
    monkeypatch.setattr(render, "envelope", lambda **kw: {**original(**kw), "status": "FAILED"})
    with pytest.raises(AssertionError, match=r"line \d+ differs"):
        _check_events(renderer, blocks, 5_000)
