"""User agents by device: a seeded pool drawn from fake-useragent's bundled usage data.

The source is the `fake_useragent/data/browsers.jsonl` that the pinned fake-useragent release
ships (2.2.0, its data collected in April 2025): real browser user agents, each with its device
type (desktop, mobile, tablet) and share of traffic. Only its data is read (its API draws from
Python's global random). Agents too old for the source are left out: a browser more than
`_WINDOW` major versions behind the newest the source has of it, iOS before 16, Android before
10, and mail clients; an iPad that asks for desktop sites (a Mac's agent with `Mobile/`) counts
as the tablet it is. A pool holds POOL_SIZE agents per device, drawn by share with the run's
seed; an app's agents (its own HTTP client, not a browser) are made from the phones' operating
systems, so they say `cdpsim-app/VERSION`. Nothing reads the clock: the same package versions and
seed give the same pool.
"""

from __future__ import annotations

import functools
from enum import IntEnum
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import orjson

from generator.profile import DEFAULT_DEVICES, PointOfSale

__all__ = [
    "AGENT_SOURCE",
    "DEVICE_CHANNEL",
    "Device",
    "agent_pool",
    "device_table",
    "newest_versions",
    "usable",
]


class Device(IntEnum):
    """What a browser runs on; a pool holds each device's agents in this order."""

    DESKTOP = 0
    MOBILE = 1  # a phone's browser
    TABLET = 2
    APP = 3  # the shop's own app on a phone


# The channel each device's sessions arrive on.
DEVICE_CHANNEL = {
    Device.DESKTOP: "WEB",
    Device.MOBILE: "MOBILE_WEB",
    Device.TABLET: "MOBILE_WEB",
    Device.APP: "MOBILE_APP",
}

_PACKAGE = "fake-useragent"
AGENT_SOURCE = f"{_PACKAGE} {metadata.version(_PACKAGE)} data/browsers.jsonl"
# How many major versions behind the newest in the source a browser may be (about a year).
_WINDOW = {"Safari": 2, "Mobile Safari": 2, "Samsung Internet": 2}
_DEFAULT_WINDOW = 12
_NOT_BROWSERS = frozenset({"Apple Mail", "Mobile Safari UI/WKWebView"})
_MIN_OS = {"iOS": 16, "Android": 10}
_APP_NAME = "cdpsim-app"
_OKHTTP = "okhttp/4.12.0"


def _major(version: object) -> int | None:
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else None


@functools.cache
def _rows() -> tuple[dict[str, object], ...]:
    path = resources.files("fake_useragent") / "data" / "browsers.jsonl"
    return tuple(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())


@functools.cache
def newest_versions() -> dict[str, int]:
    """The newest major version the source has of each browser."""
    out: dict[str, int] = {}
    for r in _rows():
        m = _major(r.get("browser_version"))
        if m is not None:
            out[str(r["browser"])] = max(out.get(str(r["browser"]), 0), m)
    return out


def usable(browser: str, version: object, os: str, os_version: object) -> bool:
    """Whether an agent of this browser and system is current enough for the pool."""
    m = _major(version)
    if m is None or browser in _NOT_BROWSERS:
        return False
    if m < newest_versions().get(browser, m) - _WINDOW.get(browser, _DEFAULT_WINDOW):
        return False
    least = _MIN_OS.get(os)
    if least is not None:
        v = _major(os_version)
        return v is not None and v >= least
    return True


_Table = tuple[tuple[tuple[str, ...], np.ndarray, tuple[tuple[str, str], ...]], ...]
# The derived table as shipped (`write_table`): reading the source and choosing from it was
# some 40 ms of every run; tests/test_devices.py holds the shipped table equal to `derive_table`.
TABLE_FILE = "agent_table.json"


@functools.cache
def _by_device() -> _Table:
    """Per browser device (desktop, mobile, tablet): its distinct agents, their shares, and
    each one's (os, os version); in the source's order. The shipped table when it was derived
    from the source installed, else derived now."""
    shipped = orjson.loads((resources.files("generator.model") / TABLE_FILE).read_bytes())
    if shipped["source"] != AGENT_SOURCE:
        return derive_table()
    return tuple(
        (tuple(agents), np.array(weights), tuple((os, v) for os, v in systems))
        for agents, weights, systems in shipped["devices"]
    )


def write_table() -> Path:
    """Write the derived table into the package (run after upgrading fake-useragent:
    `python -m generator.model.agents`)."""
    table = {
        "source": AGENT_SOURCE,
        "devices": [
            [list(agents), weights.tolist(), [list(s) for s in systems]]
            for agents, weights, systems in derive_table()
        ],
    }
    path = Path(__file__).with_name(TABLE_FILE)
    path.write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def derive_table() -> _Table:
    """`_by_device`'s table, from the source."""
    kinds: dict[str, int] = {
        "desktop": Device.DESKTOP,
        "mobile": Device.MOBILE,
        "tablet": Device.TABLET,
    }
    shares: list[dict[str, float]] = [{}, {}, {}]
    systems: list[dict[str, tuple[str, str]]] = [{}, {}, {}]
    for r in _rows():
        kind = kinds.get(str(r.get("type")))
        if kind is None:
            continue
        os, os_version = str(r.get("os")), str(r.get("os_version"))
        if not usable(str(r.get("browser")), r.get("browser_version"), os, os_version):
            continue
        ua = str(r["useragent"])
        if kind == Device.DESKTOP and "Macintosh" in ua and "Mobile/" in ua:
            kind = Device.TABLET  # iPadOS Safari asks for desktop sites as a Mac would
        shares[kind][ua] = shares[kind].get(ua, 0.0) + float(str(r["percent"]))
        systems[kind].setdefault(ua, (os, os_version))
    out = []
    for kind in range(3):
        agents = tuple(shares[kind])
        weights = np.array([shares[kind][a] for a in agents])
        out.append((agents, weights / weights.sum(), tuple(systems[kind][a] for a in agents)))
    return tuple(out)


def _app_agent(os: str, os_version: str, version: str) -> str:
    if os == "iOS":
        return f"{_APP_NAME}/{version} (iPhone; iOS {os_version}; Scale/3.00)"
    return f"{_APP_NAME}/{version} (Linux; Android {os_version}) {_OKHTTP}"


@functools.cache
def agent_pool(seed: int, size: int) -> tuple[str, ...]:
    """`size` agents per Device, in Device order (agent i is of device i // size)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xA9E7,)))
    pool: list[str] = []
    for agents, weights, _ in _by_device():
        pool.extend(agents[i] for i in rng.choice(len(agents), size, p=weights).tolist())
    # The app runs on the phones the source has, in their shares, in a few recent releases.
    agents, weights, systems = _by_device()[Device.MOBILE]
    phones = rng.choice(len(agents), size, p=weights).tolist()
    minor = rng.integers(8, 13, size).tolist()
    patch = rng.integers(0, 4, size).tolist()
    pool.extend(
        _app_agent(systems[i][0], systems[i][1], f"4.{m}.{p}")
        for i, m, p in zip(phones, minor, patch, strict=True)
    )
    return tuple(pool)


def device_table(points_of_sale: tuple[PointOfSale, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per point of sale and Device: the cumulative share of its browsers, and the index of the
    device's channel in the point of sale's channels (-1: none). Without `devices`, the default
    shares of the devices whose channel is listed; a point of sale that lists none of WEB,
    MOBILE_WEB and MOBILE_APP has desktop browsers on its first channel."""
    cum = np.zeros((len(points_of_sale), len(Device)))
    channel = np.full((len(points_of_sale), len(Device)), -1, dtype=np.int64)
    for p, pos in enumerate(points_of_sale):
        listed = [str(c) for c in pos.channels]
        devices = pos.devices or DEFAULT_DEVICES
        share = np.zeros(len(Device))
        for d in Device:
            if DEVICE_CHANNEL[d] in listed:
                channel[p, d] = listed.index(DEVICE_CHANNEL[d])
                share[d] = getattr(devices, d.name.lower())
        if share.sum() <= 0:
            share[:] = 0.0
            share[Device.DESKTOP] = 1.0
            channel[p, Device.DESKTOP] = 0
        cum[p] = np.cumsum(share / share.sum())
        cum[p, -1] = 1.0
    return cum, channel


if __name__ == "__main__":
    print(f"wrote {write_table()} from {AGENT_SOURCE}")
