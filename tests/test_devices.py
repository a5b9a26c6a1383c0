"""Devices: user agents from the pinned usage data, current, in the profile's shares, on the
channel their device arrives on; the shop's app only on MOBILE_APP."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import PROFILES

from generator.dataset.reader import open_dataset
from generator.model import agents
from generator.model.agents import DEVICE_CHANNEL, Device, agent_pool, newest_versions
from generator.model.block import simulate_block
from generator.model.pools import POOL_SIZE
from generator.model.world import World
from generator.profile import ProfileError, load_profile, parse_profile
from generator.report.dataset_report import device_of

# What the report (an analyst's reading of a user agent) calls each device, and its channel.
_CHANNEL_OF = {"desktop": "WEB", "phone": "MOBILE_WEB", "tablet": "MOBILE_WEB", "app": "MOBILE_APP"}


def test_every_browser_is_on_the_channel_of_its_device(multi_dataset: Path) -> None:
    ds = open_dataset(multi_dataset)
    channel_of: dict[str, str] = {}
    devices: Counter[str] = Counter()
    for _, guest in ds.guests():
        for b in guest["browsers"]:
            device = device_of(b["userAgent"])
            devices[device] += 1
            assert b["channel"] == _CHANNEL_OF[device], b
            assert ("cdpsim-app/" in b["userAgent"]) == (b["channel"] == "MOBILE_APP"), b
            channel_of[b["browserRef"]] = b["channel"]
    assert set(devices) == set(_CHANNEL_OF)  # every device, so the check above bites
    for _, event in ds.events():
        assert event["channel"] == channel_of[event["browserRef"]]


def _version(pattern: str, agent: str) -> int | None:
    m = re.search(pattern, agent)
    return int(m.group(1)) if m else None


def test_no_agent_is_older_than_the_source_allows() -> None:
    pool = agent_pool(20250106, POOL_SIZE)
    assert len(pool) == POOL_SIZE * len(Device)
    newest = newest_versions()
    for agent in pool:
        assert "MSIE" not in agent and "Trident" not in agent, agent
        chrome = _version(r"(?:Chrome|CriOS)/(\d+)", agent)
        if chrome is not None:
            assert chrome >= newest["Chrome"] - 12, agent
        firefox = _version(r"(?:Firefox|FxiOS)/(\d+)", agent)
        if firefox is not None:
            assert firefox >= newest["Firefox"] - 12, agent
        ios = _version(r"(?:iPhone OS|CPU OS|iOS) (\d+)", agent)
        if ios is not None:
            assert ios >= 16, agent
        android = _version(r"Android (\d+)", agent)
        if android is not None:
            assert android >= 10, agent
    for d in Device:
        agents = pool[d * POOL_SIZE : (d + 1) * POOL_SIZE]
        assert {device_of(a) for a in agents} <= {
            Device.DESKTOP: {"desktop"},
            Device.MOBILE: {"phone"},
            Device.TABLET: {"tablet", "phone"},  # an iPad's Safari says Mobile
            Device.APP: {"app"},
        }[d], d
    # Seeded: the same seed the same pool, another seed another draw.
    assert agent_pool(20250106, POOL_SIZE) == pool
    assert agent_pool(1, POOL_SIZE) != pool


def test_browsers_follow_the_point_of_sales_device_shares() -> None:
    profile = load_profile(PROFILES / "multi-region.yaml")
    world = World(profile, guests=8192)
    counts = np.zeros((len(profile.points_of_sale), len(Device)))
    for block in range(world.blocks):
        facts = simulate_block(world, block)
        pos = facts.guest_pos[facts.browser_guest]
        np.add.at(counts, (pos, facts.browser_agent // POOL_SIZE), 1)
    for p, point in enumerate(profile.points_of_sale):
        devices = point.devices
        want = (
            np.array([devices.desktop, devices.mobile, devices.tablet, devices.app])
            if devices is not None
            else np.array([0.28, 0.6, 0.04, 0.08])  # DEFAULT_DEVICES
        )
        got = counts[p] / counts[p].sum()
        assert got == pytest.approx(want, abs=0.035), point.name


def _profile(pos: dict[str, object]) -> dict[str, object]:
    return {
        "name": "t",
        "clientKey": "TestKey00000000000000000000000AB",
        "start": "2025-01-06T00:00:00Z",
        "pointsOfSale": [{"name": "shop/ie", **pos}],
        "behaviour": {"catalog": [{"type": "shoes", "name": "Shoes"}]},
        "flows": [],
    }


def test_a_device_share_needs_its_channel() -> None:
    with pytest.raises(ProfileError, match=r"devices\.mobile.*MOBILE_WEB"):
        parse_profile(
            _profile({"channels": ["WEB"], "devices": {"desktop": 0.5, "mobile": 0.5}}), "t.yaml"
        )
    with pytest.raises(ProfileError, match=r"device shares sum to 1\.5"):
        parse_profile(_profile({"devices": {"desktop": 1.0, "mobile": 0.5}}), "t.yaml")
    # Without `devices`, the default shares of the devices whose channel is listed.
    web_only = World(parse_profile(_profile({"channels": ["WEB"]}), "t.yaml"), guests=500)
    facts = simulate_block(web_only, 0)
    assert set((facts.browser_agent // POOL_SIZE).tolist()) == {Device.DESKTOP}
    assert DEVICE_CHANNEL[Device.DESKTOP] == "WEB"


def test_the_shipped_agent_table_is_the_one_derived_from_the_source() -> None:
    # The package ships the table it would derive from fake-useragent's data (derivation was
    # 40 ms of every run); after an upgrade of that package, `python -m generator.model.agents`.
    table = Path(agents.__file__).with_name(agents.TABLE_FILE).read_bytes()
    assert orjson.loads(table)["source"] == agents.AGENT_SOURCE  # else it is not even read
    agents._by_device.cache_clear()
    try:
        shipped = agents._by_device()
    finally:
        agents._by_device.cache_clear()
    derived = agents.derive_table()
    assert len(shipped) == len(derived) == 3
    for (a, w, s), (da, dw, ds) in zip(shipped, derived, strict=True):
        assert a == da and s == ds
        assert w.tolist() == dw.tolist()  # exactly: the pool's draws depend on every bit
