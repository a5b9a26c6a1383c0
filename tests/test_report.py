"""`cdpsim report`: every figure's data against the manifest, the load summary and the events
themselves; the page references nothing outside itself; a headless Chromium draws it cleanly."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import PROFILES, make_dataset

from generator.cli import main
from generator.report.dataset_report import device_of
from generator.report.html import read_figures
from generator.report.published import PUBLISHED
from generator.report.stats import compare, wilson

CHROMIUM = Path("/usr/bin/chromium")
# Attributes that make a browser fetch or navigate somewhere.
_URL_ATTRS = {"src", "href", "action", "data", "poster", "srcset", "formaction", "xlink:href"}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.tags: set[str] = set()
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self._in = tag
        for name, value in attrs:
            if name in _URL_ATTRS and value is not None:
                self.refs.append(f"<{tag} {name}={value}>")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.styles.append(data)
        elif self._in == "script":
            self.scripts.append(data)


def _sale(e: dict[str, Any]) -> bool:
    """A CHECKOUT that places an order: stored PROCESSED, PURCHASED or PAYMENT_PENDING."""
    status = e["arbitraryData"].get("status")
    return bool(e["status"] == "PROCESSED" and status in ("PURCHASED", "PAYMENT_PENDING"))


def assert_self_contained(page: str) -> None:
    parser = _Refs()
    parser.feed(page)
    outside = [r for r in parser.refs if not r.split("=", 1)[1].startswith(("#", "data:"))]
    assert outside == [], f"the page references outside itself: {outside[:5]}"
    assert not parser.tags & {"link", "iframe", "img", "base", "object", "embed"}
    assert not any("url(" in s or "@import" in s for s in parser.styles)
    # plotly.js itself is inline: the biggest script defines Plotly.
    assert max(len(s) for s in parser.scripts) > 1_000_000
    assert any("Plotly" in s and len(s) > 1_000_000 for s in parser.scripts)


def build(directory: Path, out: Path) -> tuple[str, dict[str, Any]]:
    assert main(["report", str(directory), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    return page, read_figures(page)


def events_of(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (directory / "events.jsonl").read_bytes().splitlines()]


def reference_conversions(
    directory: Path, manifest: dict[str, Any], windows_h: dict[str, list[int]]
) -> dict[tuple[str, str, int], int]:
    """The answer key's definition, written out plainly: converted guests per (flow, variant,
    window hours), from the events alone."""
    owner = {}
    for line in (directory / "guests.jsonl").read_bytes().splitlines():
        g = orjson.loads(line)
        for b in g["browsers"]:
            owner[b["browserRef"]] = g["guestRef"]
    first: dict[tuple[str, str], tuple[int, str]] = {}
    orders: dict[str, list[tuple[int, set[str]]]] = defaultdict(list)
    carts: dict[str, set[str]] = defaultdict(set)
    from generator.events.stored import parse_iso_ms

    vname = {
        v["flowVariantRef"]: v["name"] for f in manifest["flows"].values() for v in f["variants"]
    }
    for e in events_of(directory):
        guest, ms, data = owner[e["browserRef"]], parse_iso_ms(e["createdAt"]), e["arbitraryData"]
        if e["type"] == "TRACKING":
            fx = data["flowExecution"]
            first.setdefault((guest, fx["flowFriendlyId"]), (ms, vname[fx["flowVariantRef"]]))
        elif e["type"] == "ADD":
            carts[e["sessionRef"]].add(data["product"]["type"])
        elif e["type"] in ("CHECKOUT", "CLEAR_CART"):
            if e["type"] == "CHECKOUT" and _sale(e):
                orders[guest].append((ms, carts[e["sessionRef"]]))
            carts[e["sessionRef"]] = set()
    out: dict[tuple[str, str, int], int] = defaultdict(int)
    for (guest, flow), (ms0, variant) in first.items():
        goal = manifest["flows"][flow]["goalProductType"]  # literally the events' spelling
        for hours in windows_h[flow]:
            if any(0 <= ms - ms0 <= hours * 3_600_000 and goal in c for ms, c in orders[guest]):
                out[(flow, variant, hours)] += 1
    return out


@pytest.fixture(scope="module")
def retail_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("retail"), "retail-ireland", events=30_000)


@pytest.mark.parametrize("which", ["smoke", "multi-region", "retail-ireland"])
def test_each_bundled_profile_report_equals_manifest_and_events(
    which: str,
    smoke_dataset: Path,
    multi_dataset: Path,
    retail_dataset: Path,
    tmp_path: Path,
) -> None:
    directory = {"smoke": smoke_dataset, "multi-region": multi_dataset}.get(which, retail_dataset)
    page, fig = build(directory, tmp_path / "r.html")
    assert_self_contained(page)
    manifest = orjson.loads((directory / "manifest.json").read_bytes())
    counts, traffic, beh = fig["counts"], fig["traffic"], fig["behaviour"]
    assert fig["kind"] == "dataset"
    assert counts["events"] == manifest["events"] == sum(traffic["eventsPerDay"])
    assert counts["byType"] == {k: v for k, v in manifest["counts"].items() if v}
    assert counts["guestsSeen"] == manifest["guests"]["seen"] == sum(traffic["newGuestsPerDay"])
    assert counts["customers"] == manifest["guests"]["customers"]
    # The answer key, at each flow's own window, equals the manifest's; and at every window the
    # manifest lists (its analysis), the manifest's converted guests equal the events'.
    for flow in fig["experiments"]:
        want = manifest["flows"][flow["flow"]]
        assert [w["label"] for w in flow["windows"][1:]] == [
            w for w in want["attributionWindows"] if w != flow["windows"][0]["label"]
        ]
        for window in flow["windows"]:
            for got in window["variants"]:
                assert got["manifestConvertedGuests"] == got["convertedGuests"]
        primary = flow["windows"][0]
        assert primary["primary"] and primary["hours"] == want["attributionHours"]
        for got, v in zip(primary["variants"], want["variants"], strict=True):
            assert got["name"] == v["name"]
            assert got["exposures"] == v["exposures"]
            assert got["exposedGuests"] == v["exposedGuests"]
            assert got["convertedGuests"] == v["convertedGuests"] == got["manifestConvertedGuests"]
            assert got["configuredRate"] == v["conversionRate"]
            assert got["ci95"] == list(wilson(v["convertedGuests"], v["exposedGuests"]))

    # Against the events themselves, counted plainly here.
    events = events_of(directory)
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        sessions[e["sessionRef"]].append(e)
    n = len(sessions)
    assert counts["sessions"] == n
    assert sum(sum(map(sum, grid)) for grid in traffic["sessionsByLocalHourWeekday"].values()) == n
    assert sum(traffic["sessionsNewPerDay"]) + sum(traffic["sessionsReturningPerDay"]) == n
    pages = defaultdict(int)
    for evs in sessions.values():
        pages[sum(1 for e in evs if e["type"] == "VIEW")] += 1
    assert dict(
        zip(beh["pagesPerSession"]["value"], beh["pagesPerSession"]["count"], strict=True)
    ) == {k: v for k, v in pages.items() if v}
    assert sum(beh["sessionDuration"]["count"]) == n
    for step, got in zip(beh["funnel"]["steps"], beh["funnel"]["sessions"], strict=True):
        assert got == sum(1 for evs in sessions.values() if any(e["type"] == step for e in evs))
    purchased = [e for e in events if e["type"] == "CHECKOUT" and _sale(e)]
    assert beh["orders"] == len(purchased) == sum(beh["basketItems"]["count"])
    assert sum(sum(h["count"]) for h in beh["orderValue"].values()) == len(purchased)
    assert sum(beh["sessionsByChannel"].values()) == n == sum(beh["sessionsByDevice"].values())
    channels = defaultdict(int)
    for evs in sessions.values():
        channels[evs[0]["channel"]] += 1
    assert beh["sessionsByChannel"] == dict(channels)
    carts = beh["carts"]
    assert carts["created"] == carts["purchased"] + carts["abandoned"]
    assert carts["purchased"] <= len(purchased)

    # The realism table: the profile is a bundled one, so every published row is there.
    realism = fig["realism"]
    assert realism is not None and realism["profile"] == which
    assert [r["key"] for r in realism["rows"]] == [p.key for p in PUBLISHED]
    values = fig["realismValues"]
    assert values["session_conversion"] == pytest.approx(
        sum(1 for evs in sessions.values() if any(e in purchased for e in evs)) / n
    )
    assert values["bounce_rate"] == pytest.approx((pages[0] + pages[1]) / n)


def test_windows_the_manifest_lists_are_shown_and_counted_from_the_events(
    smoke_dataset: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "ds"
    shutil.copytree(smoke_dataset, directory)
    manifest = orjson.loads((directory / "manifest.json").read_bytes())
    # Windows as another writer may list them: hours and labels, with a per-window answer.
    manifest["flows"]["smoke_banner"]["attributionWindows"] = [1, "3h", "1d", "7d"]
    manifest["flows"]["smoke_popup"]["attributionWindows"] = ["1h", "3d"]
    windows = {"smoke_banner": [3, 1, 24, 168], "smoke_popup": [24, 1, 72]}
    reference = reference_conversions(directory, manifest, windows)
    for v in manifest["flows"]["smoke_banner"]["variants"]:
        v["windows"] = {"1d": {"convertedGuests": reference[("smoke_banner", v["name"], 24)]}}
    (directory / "manifest.json").write_bytes(orjson.dumps(manifest))
    page, fig = build(directory, tmp_path / "r.html")
    assert_self_contained(page)
    for flow in fig["experiments"]:
        assert [w["hours"] for w in flow["windows"]] == windows[flow["flow"]]
        for w in flow["windows"]:
            for v in w["variants"]:
                assert v["convertedGuests"] == reference[(flow["flow"], v["name"], w["hours"])]
                if flow["flow"] == "smoke_banner" and w["hours"] == 24:
                    assert v["manifestConvertedGuests"] == v["convertedGuests"]
        # The primary window's reference equals the manifest's own answer key too.
        for v, mv in zip(
            flow["windows"][0]["variants"], manifest["flows"][flow["flow"]]["variants"], strict=True
        ):
            assert v["convertedGuests"] == mv["convertedGuests"]
    assert "window 7d" in page and "window 3d" in page


def test_a_changed_profile_gets_no_realism_table(tmp_path: Path) -> None:
    text = (PROFILES / "smoke.yaml").read_text()
    changed = tmp_path / "smoke.yaml"  # the same name, other bytes: not the bundled profile
    changed.write_text(text + "\n# changed\n")
    from generator.profile import load_profile

    directory = make_dataset(tmp_path / "ds", load_profile(changed))
    _, fig = build(directory, tmp_path / "r.html")
    assert fig["realism"] is None
    assert fig["realismValues"]["pages_per_session"] is not None


def test_proportions() -> None:
    lo, hi = wilson(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    c = compare(60, 100, 50, 100)
    assert c is not None
    assert round(c.z, 4) == 1.4213 and round(c.p_value, 4) == 0.1552
    assert c.improvement == pytest.approx(0.2)
    assert compare(1, 0, 1, 10) is None


def test_devices_from_user_agents() -> None:
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    )
    ipad = "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    android_tab = (
        "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
    )
    android_phone = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 "
        "Mobile Safari/537.36"
    )
    desktop = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
    )
    assert [device_of(ua) for ua in (iphone, ipad, android_tab, android_phone, desktop)] == [
        "phone",
        "tablet",
        "tablet",
        "phone",
        "desktop",
    ]


def test_bad_directories_give_readable_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1
    assert "no events.jsonl" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 1
    assert "summary.json: not valid JSON" in capsys.readouterr().err


@pytest.fixture(scope="module")
def load_report(journeys_report: tuple[int, Path]) -> Path:
    code, out = journeys_report  # the load run test_load_runs reads too (conftest)
    assert code == 0
    return out


def test_load_run_writes_its_report_and_every_figure_equals_the_summary(load_report: Path) -> None:
    page = (load_report / "cdpsim-report.html").read_text(encoding="utf-8")
    assert (load_report / "locust.html").is_file()  # Locust's own report is still beside it
    assert_self_contained(page)
    fig = read_figures(page)
    summary = orjson.loads((load_report / "summary.json").read_bytes())
    assert fig["kind"] == "load"
    assert fig["verdict"] == summary["verdict"] == "held"
    assert fig["exitCode"] == summary["exit_code"]
    assert fig["reconciliation"] == summary["reconciliation"]
    assert fig["statusCodes"] == summary["status_codes"]
    assert fig["latency"]["plain"] == summary["latency_ms"]
    for key in ("requests", "failures", "rps", "events_sent", "events_acknowledged"):
        assert fig["totals"][key] == summary[key]
    # The verdict comes first on the page, before any figure.
    assert page.index("verdict: held") < page.index("plotly-graph-div")
    with (load_report / "locust_stats_history.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["Name"] == "Aggregated"]
    assert len(fig["history"]["t"]) == len(rows) > 0
    assert fig["history"]["totalRequests"][-1] == float(rows[-1]["Total Request Count"])
    # A second report of the same directory, by the command, holds the same figures.
    assert main(["report", str(load_report), "--out", str(load_report / "again.html")]) == 0
    again = read_figures((load_report / "again.html").read_text(encoding="utf-8"))
    assert again == fig


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        *args,
    ]
    # Its own process group, so a hang ends every process it started.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_chromium_draws_both_reports_without_script_errors(
    multi_dataset: Path, load_report: Path, tmp_path: Path
) -> None:
    _, fig = build(multi_dataset, tmp_path / "dataset.html")
    for page in (tmp_path / "dataset.html", load_report / "cdpsim-report.html"):
        shot = tmp_path / f"{page.stem}.png"
        # One run both draws the screenshot and prints the DOM after the scripts ran.
        dom = _chromium(
            [
                "--window-size=1280,2400",
                "--hide-scrollbars",
                f"--screenshot={shot}",
                "--dump-dom",
                page.as_uri(),
            ],
            tmp_path,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        root = dom.stdout[: dom.stdout.index(">", dom.stdout.index("<html")) + 1]
        assert 'data-cdpsim-ready="1"' in root, root
        assert 'data-cdpsim-errors="0"' in root, root
        drawn, total = root.split('data-cdpsim-plots="')[1].split('"')[0].split("/")
        assert drawn == total
        assert int(total) == page.read_text(encoding="utf-8").count('class="plotly-graph-div"') >= 4
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig["traffic"]["sessionsByLocalHourWeekday"]) == 4  # one heatmap per point of sale
    # The error marker does see a script error: the same page with one thrown.
    broken = tmp_path / "broken.html"
    text = (load_report / "cdpsim-report.html").read_text(encoding="utf-8")
    marker = '<script type="application/json"'
    broken.write_text(text.replace(marker, '<script>throw new Error("x")</script>' + marker, 1))
    dom = _chromium(["--dump-dom", broken.as_uri()], tmp_path)
    root = dom.stdout[: dom.stdout.index(">", dom.stdout.index("<html")) + 1]
    assert 'data-cdpsim-errors="1"' in root and 'data-cdpsim-ready="1"' in root, root


def test_the_self_contained_check_catches_outside_references(
    smoke_dataset: Path, tmp_path: Path
) -> None:
    page, _ = build(smoke_dataset, tmp_path / "r.html")
    for bad in (
        '<script src="https://cdn.example.com/plotly.js"></script>',
        '<a href="locust.html">Locust</a>',
        "<style>body{background:url(http://example.com/x.png)}</style>",
    ):
        with pytest.raises(AssertionError):
            assert_self_contained(page.replace("</main>", bad + "</main>", 1))
