"""A population that arrives: new guests across the window, returning guests with a history
before it, a steady share of new guests, a guest's work bounded however long the window; and the
default profile's journeys and week as published."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import PROFILES, make_dataset

from generator.dataset.realism import WEEKDAYS, measure
from generator.dataset.validate import validate_dataset
from generator.model.block import simulate_block
from generator.model.world import World
from generator.profile import load_profile


def _ms(stamp: str) -> int:
    return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def _new_share_by_day(directory: Path, start_ms: int) -> np.ndarray:
    """Per day of the window, the share of its sessions that are a guest's first visit ever
    (no earlier session in the data, no firstSeen before it), read from the files."""
    owner: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for line in (directory / "guests.jsonl").read_bytes().splitlines():
        guest = orjson.loads(line)
        for b in guest["browsers"]:
            owner[b["browserRef"]] = guest["guestRef"]
        if "firstSeen" in guest:
            first_seen[guest["guestRef"]] = _ms(guest["firstSeen"])
    opened: dict[str, tuple[int, str]] = {}
    for line in (directory / "events.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        if event["sessionRef"] not in opened:
            opened[event["sessionRef"]] = (_ms(event["createdAt"]), owner[event["browserRef"]])
    seen: set[str] = set()
    new, total = np.zeros(64), np.zeros(64)
    for at, guest in sorted(opened.values()):
        day = (at - start_ms) // 86_400_000
        total[day] += 1
        new[day] += guest not in seen and first_seen.get(guest, at) >= at
        seen.add(guest)
    days = int(np.flatnonzero(total)[-1]) + 1
    return new[:days] / total[:days]


def test_new_guests_are_a_steady_share_from_the_first_day_to_the_last(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "retail-ireland.yaml")
    out = make_dataset(tmp_path / "d", profile, days=14, guests=8000)
    shares = _new_share_by_day(out, int(profile.start.timestamp() * 1000))
    assert len(shares) == 14
    # Guests active before the window return in it: day 1 is no newer than day 14.
    assert shares[:3].mean() == pytest.approx(shares[-3:].mean(), abs=0.06)
    assert shares.min() > 0.35 and shares.max() < 0.65


def test_returning_share_follows_the_active_time_and_rate() -> None:
    """Returning share of sessions x / (1 + x), x = sessionsPerWeek / 7 * activeDays."""
    profile = load_profile(PROFILES / "retail-ireland.yaml")
    for rate, active in ((0.175, 40.0), (0.7, 20.0)):
        population = profile.population.model_copy(
            update={"sessions_per_week": rate, "active_days": active}
        )
        world = World(profile.model_copy(update={"population": population}), days=14)
        visits = world.arrivals.draw(
            np.random.default_rng(1), np.zeros(40_000, dtype=np.int64), world.start_ms
        )
        x = rate / 7 * active
        assert 1 - visits.new.sum() / len(visits) == pytest.approx(x / (1 + x), abs=0.02)
        # Every guest drawn visits the window; its first visit there comes first.
        first = np.flatnonzero(np.diff(visits.guest, prepend=-1))
        assert len(first) == len(visits.new)
        assert (visits.start >= world.start_ms).all() and (visits.start < world.end_ms).all()
        # Returning guests were first seen before the window, new ones at their first visit.
        assert (visits.since_ms[~visits.new] < world.start_ms).all()
        assert (visits.since_ms[visits.new] == visits.start[first][visits.new]).all()


def test_a_guests_sessions_stay_bounded_however_long_the_window() -> None:
    """A block holds the guests the window sees: a year's block has about as many sessions as
    a month's (memory flat in days), and every one of its guests visits."""
    profile = load_profile(PROFILES / "retail-ireland.yaml")
    sessions = {}
    for days in (30, 365):
        world = World(profile, days=days, guests=2048)
        facts = simulate_block(world, 0)
        sessions[days] = len(facts.session_browser)
        guests_seen = np.unique(facts.browser_guest[facts.session_browser[facts.session]])
        assert len(guests_seen) >= 0.99 * 2048  # a few may be pushed past the window's end
        bound = world.arrivals.expected_sessions(world.pos_shares)
        assert bound < 1 + 0.175 / 7 * 40 * 1.5
    assert sessions[365] < 2.0 * sessions[30]


def test_sessions_per_guest_over_a_month_look_like_a_shop(tmp_path: Path) -> None:
    figures = measure(make_dataset(tmp_path / "m", "retail-ireland", days=30, guests=6000))
    assert 1.2 <= figures.figures["sessions_per_guest"] <= 1.6


def test_a_long_window_of_a_busy_population_is_valid(tmp_path: Path) -> None:
    """Sessions of one browser never overlap, however many a guest has over 60 days."""
    profile = load_profile(PROFILES / "smoke.yaml")
    report = validate_dataset(make_dataset(tmp_path / "b", profile, days=60, guests=40))
    assert report.ok, {k: report.examples[k] for k in report.problems}


def test_the_default_week_behaves_as_published(tmp_path: Path) -> None:
    r = measure(make_dataset(tmp_path / "w", "retail-ireland"))
    f = r.figures
    assert 0.35 <= f["bounce_rate"] <= 0.60
    assert 4.0 <= f["pages_per_session"] <= 6.5
    assert f["pages_per_buying_session"] >= 12
    assert 45 <= f["time_on_page_s"] <= 65
    assert 240 <= f["session_duration_s"] <= 420
    assert 0.35 <= f["returning_share"] <= 0.65
    assert r.counts["guestsWithSessions"] == r.counts["guests"] == 20_000
    # Monday busiest, every weekday above both weekend days.
    assert f["busiest_weekday"] == "Monday"
    shares = r.weekday_shares
    assert min(shares[d] for d in WEEKDAYS[:5]) > max(shares[d] for d in WEEKDAYS[5:])
