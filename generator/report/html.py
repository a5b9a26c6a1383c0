"""One self-contained HTML page from a report's figures: plotly.js inline, nothing fetched.

The figures' data also sits in the page as a JSON block (`<script type="application/json"
id="cdpsim-figures">`), so a reader (or a test) can check the numbers behind every picture.
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Any

import orjson

__all__ = ["FIGURES_ID", "dataset_html", "load_html", "read_figures", "write_report"]

FIGURES_ID = "cdpsim-figures"
_CONFIG = {"displaylogo": False, "responsive": True}
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 48, "b": 48},
    "height": 340,
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
}
_COLOURS = ("#2563eb", "#f97316", "#10b981", "#a855f7", "#ef4444", "#eab308", "#0ea5e9")

# Fixed columns: each plot is sized as its script runs, before the cells after it exist.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;
color:#1f2937}
header{background:#111827;color:#f9fafb;padding:18px 32px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#9ca3af;font-size:13px}
main{max-width:1280px;margin:0 auto;padding:16px 24px 48px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin:16px 0;
padding:12px 20px}
section h2{font-size:17px;margin:8px 0 4px}
section p.note{color:#6b7280;font-size:13px;margin:2px 0 8px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}
.grid>div{min-width:0;overflow:hidden}
@media (max-width:900px){.grid{grid-template-columns:minmax(0,1fr)}}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{background:#f9fafb;border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;
min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#6b7280;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0;width:100%}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f9fafb}
td.l,th.l{text-align:left}.ok{color:#047857;font-weight:600}.bad{color:#b91c1c;font-weight:600}
.verdict{font-size:20px;font-weight:700;padding:12px 18px;border-radius:8px;margin:12px 0}
.verdict.held{background:#d1fae5;color:#065f46}.verdict.fail{background:#fee2e2;color:#991b1b}
"""

# Script errors are recorded on the root element so a headless browser's DOM shows them.
_HEAD_SCRIPT = """
window.__cdpsimErrors=[];
window.addEventListener('error',function(e){window.__cdpsimErrors.push(String(e.message));
document.documentElement.setAttribute('data-cdpsim-errors',String(window.__cdpsimErrors.length));});
"""
_TAIL_SCRIPT = """
(function(){var all=document.querySelectorAll('.plotly-graph-div').length;
var drawn=document.querySelectorAll('.js-plotly-plot').length;
var root=document.documentElement;root.setAttribute('data-cdpsim-plots',drawn+'/'+all);
root.setAttribute('data-cdpsim-errors',String(window.__cdpsimErrors.length));
root.setAttribute('data-cdpsim-ready','1');})();
"""


def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


class _Page:
    def __init__(self, title: str, subtitle: str) -> None:
        self.title = title
        self.subtitle = subtitle
        self.parts: list[str] = []
        self._ids = itertools.count(1)
        self._template: dict[str, Any] | None = None

    def section(self, title: str, note: str = "") -> None:
        if self.parts:
            self.parts.append("</section>")
        self.parts.append(f"<section><h2>{_e(title)}</h2>")
        if note:
            self.parts.append(f'<p class="note">{_e(note)}</p>')

    def raw(self, text: str) -> None:
        self.parts.append(text)

    def grid(self, figures: list[dict[str, Any]]) -> None:
        self.parts.append('<div class="grid">')
        for fig in figures:
            self.figure(fig)
        self.parts.append("</div>")

    def figure(self, fig: dict[str, Any]) -> None:
        import plotly.io as pio

        if self._template is None:
            # Resolved once: without validation plotly would not look a template name up.
            self._template = pio.templates["plotly_white"].to_plotly_json()
        layout = {"template": self._template, **_LAYOUT, **fig.get("layout", {})}
        self.parts.append(
            pio.to_html(
                {"data": fig["data"], "layout": layout},
                include_plotlyjs=False,
                full_html=False,
                config=_CONFIG,
                validate=False,
                div_id=f"fig{next(self._ids)}",
            )
        )

    def render(self, figures: dict[str, Any]) -> str:
        if self.parts:
            self.parts.append("</section>")
        data = orjson.dumps(figures, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"</", b"<\\/")
        return "".join(
            [
                "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>",
                "<meta name='viewport' content='width=device-width, initial-scale=1'>",
                f"<title>{_e(self.title)}</title><style>{_CSS}</style>",
                f"<script>{_HEAD_SCRIPT}</script>",
                f'<script type="text/javascript">{_plotlyjs()}</script></head><body>',
                f"<header><h1>{_e(self.title)}</h1><p>{_e(self.subtitle)}</p></header><main>",
                *self.parts,
                "</main>",
                f'<script type="application/json" id="{FIGURES_ID}">{data.decode()}</script>',
                f"<script>{_TAIL_SCRIPT}</script></body></html>\n",
            ]
        )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pct(x: Any, digits: int = 1) -> str:
    return "–" if not isinstance(x, int | float) else f"{x * 100:.{digits}f}%"


def _num(x: Any, digits: int = 2) -> str:
    if isinstance(x, bool) or x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return _e(x)


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Cells are HTML already escaped; the first `left` columns align left."""
    out = ["<table><tr>"]
    out += [f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(head)]
    out.append("</tr>")
    for row in rows:
        out.append("<tr>")
        out += [f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _cards(items: list[tuple[str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{v}</b><span>{_e(k)}</span></div>' for k, v in items)
        + "</div>"
    )


def _bar(title: str, x: list[Any], y: list[Any], xtitle: str = "", ytitle: str = "") -> dict:
    return {
        "data": [{"type": "bar", "x": x, "y": y, "marker": {"color": _COLOURS[0]}}],
        "layout": {
            "title": {"text": title},
            "xaxis": {"title": {"text": xtitle}, "type": "category", "automargin": True},
            "yaxis": {"title": {"text": ytitle}},
        },
    }


# ---- dataset ----------------------------------------------------------------------------------


def dataset_html(fig: dict[str, Any]) -> str:
    ds, counts, traffic, beh = fig["dataset"], fig["counts"], fig["traffic"], fig["behaviour"]
    page = _Page(
        f"cdpsim dataset report: {ds.get('profile')}",
        f"{ds.get('directory')} · seed {ds.get('seed')} · {ds.get('start')} to {ds.get('end')} "
        f"· {len(ds.get('pointsOfSale', {}))} point(s) of sale",
    )
    page.section("Summary")
    page.raw(
        _cards(
            [
                ("events", _num(counts["events"])),
                ("guests seen", _num(counts["guestsSeen"])),
                ("customers (identified)", _num(counts["customers"])),
                ("sessions", _num(counts["sessions"])),
                ("orders", _num(beh["orders"])),
                ("days in the window", _num(ds.get("windowDays"), 1)),
            ]
        )
    )
    page.raw(
        _table(
            ["event type", "events"],
            [[_e(k), _num(v)] for k, v in counts["byType"].items()],
        )
    )

    page.section(
        "Traffic",
        "Sessions by the hour and weekday they start, in each point of sale's own timezone; "
        "events per UTC day; sessions of guests new that day (their first in the dataset) "
        "against guests who came back.",
    )
    heat = []
    for pos, grid in traffic["sessionsByLocalHourWeekday"].items():
        tz = ds.get("pointsOfSale", {}).get(pos, {}).get("timezone", "")
        heat.append(
            {
                "data": [
                    {
                        "type": "heatmap",
                        "z": grid,
                        "x": list(range(24)),
                        "y": traffic["weekdays"],
                        "colorscale": [[0, "#f1f5f9"], [0.5, "#60a5fa"], [1, "#1e3a8a"]],
                        "hovertemplate": "%{y} %{x}:00 · %{z} sessions<extra></extra>",
                    }
                ],
                "layout": {
                    "title": {"text": f"Sessions by local hour: {pos} ({tz})"},
                    "xaxis": {"title": {"text": "local hour"}, "dtick": 2},
                    "yaxis": {"autorange": "reversed"},
                },
            }
        )
    page.grid(heat)
    days = traffic["days"]
    page.grid(
        [
            _bar("Events per day (UTC)", days, traffic["eventsPerDay"], "", "events"),
            {
                "data": [
                    {
                        "type": "bar",
                        "name": "sessions of new guests",
                        "x": days,
                        "y": traffic["sessionsNewPerDay"],
                        "marker": {"color": _COLOURS[1]},
                    },
                    {
                        "type": "bar",
                        "name": "sessions of returning guests",
                        "x": days,
                        "y": traffic["sessionsReturningPerDay"],
                        "marker": {"color": _COLOURS[0]},
                    },
                ],
                "layout": {
                    "title": {"text": "New and returning guests' sessions per day"},
                    "barmode": "stack",
                    "xaxis": {"type": "category"},
                    "legend": {"orientation": "h", "y": -0.2},
                },
            },
        ]
    )

    page.section("Behaviour", "Per session: pages (VIEW events), time from first to last event.")
    pages, dur = beh["pagesPerSession"], beh["sessionDuration"]
    funnel = beh["funnel"]
    carts = beh["carts"]
    page.grid(
        [
            _bar("Pages per session", pages["value"], pages["count"], "pages", "sessions"),
            _bar("Session duration", dur["bin"], dur["count"], "", "sessions"),
            {
                "data": [
                    {
                        "type": "funnel",
                        "y": funnel["steps"],
                        "x": funnel["sessions"],
                        "textinfo": "value+percent initial",
                        "marker": {"color": list(_COLOURS[: len(funnel["steps"])])},
                    }
                ],
                "layout": {"title": {"text": "Funnel: sessions with each step"}},
            },
            {
                "data": [
                    {
                        "type": "bar",
                        "x": ["bought", "abandoned", "of them cleared"],
                        "y": [carts["purchased"], carts["abandoned"], carts["cleared"]],
                        "marker": {"color": [_COLOURS[2], _COLOURS[4], _COLOURS[5]]},
                    }
                ],
                "layout": {
                    "title": {
                        "text": f"Carts: {carts['created']:,} made, "
                        f"{_pct(carts['abandonment'])} abandoned"
                    },
                    "xaxis": {"type": "category"},
                },
            },
            {
                "data": [
                    {
                        "type": "pie",
                        "labels": list(beh["sessionsByDevice"]),
                        "values": list(beh["sessionsByDevice"].values()),
                        "hole": 0.45,
                        "marker": {"colors": list(_COLOURS)},
                    }
                ],
                "layout": {"title": {"text": "Sessions by device (user agent)"}},
            },
            _bar(
                "Sessions by channel",
                list(beh["sessionsByChannel"]),
                list(beh["sessionsByChannel"].values()),
            ),
            _bar(
                "Basket size (items in completed orders)",
                beh["basketItems"]["value"],
                beh["basketItems"]["count"],
                "items",
                "orders",
            ),
            *[
                {
                    "data": [
                        {
                            # Binned by plotly from (value, count) pairs: a histogram of sums.
                            "type": "histogram",
                            "histfunc": "sum",
                            "x": h["value"],
                            "y": h["count"],
                            "nbinsx": 30,
                            "marker": {"color": _COLOURS[(i + 1) % len(_COLOURS)]},
                        }
                    ],
                    "layout": {
                        "title": {"text": f"Order values in {cur}"},
                        "xaxis": {"title": {"text": cur}},
                        "yaxis": {"title": {"text": "orders"}},
                    },
                }
                for i, (cur, h) in enumerate(beh["orderValue"].items())
            ],
        ]
    )
    aov = ", ".join(f"{_e(c)} {v:,.2f}" for c, v in beh["averageOrderValue"].items()) or "–"
    statuses = ", ".join(f"{_e(k)} {v:,}" for k, v in beh["orderStatus"].items()) or "none"
    page.raw(f'<p class="note">Average order value: {aov}. CHECKOUT statuses: {statuses}.</p>')

    _experiments_section(page, fig["experiments"])
    if fig.get("realism"):
        _realism_section(page, fig["realism"])
    return page.render(fig)


def _difference(cmp: dict[str, Any]) -> str:
    lo, hi = cmp["differenceCi95"]
    return f"{cmp['difference'] * 100:+.1f} pt [{lo * 100:+.1f}, {hi * 100:+.1f}]"


def _experiments_section(page: _Page, experiments: list[dict[str, Any]]) -> None:
    page.section(
        "Experiments and the answer key",
        "Per flow and variant: guests exposed, guests converted within the attribution window "
        "(a completed order holding the flow's goal product after the first exposure), the rate "
        "with its 95% Wilson interval, the configured rate (the answer key) beside it, and each "
        "variant against control: the difference with its 95% interval and a two-proportion "
        "z-test.",
    )
    for flow in experiments:
        page.raw(
            f"<h3>{_e(flow['flow'])} <small>({_e(flow['kind'])}, goal "
            f"{_e(flow['goalProductType'])}, traffic {_pct(flow['trafficAllocation'], 0)}, "
            f"control {_e(flow['control'])})</small></h3>"
        )
        charts = []
        for window in flow["windows"]:
            rows = []
            for v in window["variants"]:
                cmp = v["vsControl"]
                lo, hi = v["ci95"]
                in_ci = v["configuredInCi"]
                mark = "" if in_ci is None else (" ✓" if in_ci else " ✗")
                rows.append(
                    [
                        _e(v["name"]),
                        _num(v["exposures"]),
                        _num(v["exposedGuests"]),
                        _num(v["convertedGuests"]),
                        _num(v["manifestConvertedGuests"]),
                        f"{_pct(v['rate'])} [{_pct(lo)}, {_pct(hi)}]",
                        f'<span class="{"ok" if in_ci else "bad" if in_ci is False else ""}">'
                        f"{_pct(v['configuredRate'])}{mark}</span>",
                        "–" if cmp is None else _difference(cmp),
                        "–"
                        if cmp is None or cmp["improvement"] is None
                        else f"{cmp['improvement'] * 100:+.0f}%",
                        "–"
                        if cmp is None
                        else f"{cmp['confidence'] * 100:.1f}% (p {cmp['pValue']:.3g})",
                    ]
                )
            page.raw(
                f"<p class='note'>window {_e(window['label'])}"
                f"{' (the flow’s own)' if window['primary'] else ''}</p>"
            )
            page.raw(
                _table(
                    [
                        "variant",
                        "exposures",
                        "exposed guests",
                        "converted",
                        "manifest says",
                        "rate [95% CI]",
                        "configured",
                        "vs control",
                        "improvement",
                        "confidence",
                    ],
                    rows,
                )
            )
            names = [v["name"] for v in window["variants"]]
            rates = [v["rate"] or 0 for v in window["variants"]]
            charts.append(
                {
                    "data": [
                        {
                            "type": "bar",
                            "name": "realised",
                            "x": names,
                            "y": rates,
                            "marker": {"color": _COLOURS[0]},
                            "error_y": {
                                "type": "data",
                                "symmetric": False,
                                "array": [
                                    v["ci95"][1] - r
                                    for v, r in zip(window["variants"], rates, strict=True)
                                ],
                                "arrayminus": [
                                    r - v["ci95"][0]
                                    for v, r in zip(window["variants"], rates, strict=True)
                                ],
                            },
                        },
                        {
                            "type": "scatter",
                            "mode": "markers",
                            "name": "configured",
                            "x": names,
                            "y": [v["configuredRate"] for v in window["variants"]],
                            "marker": {"color": _COLOURS[1], "size": 14, "symbol": "diamond"},
                        },
                    ],
                    "layout": {
                        "title": {"text": f"{flow['flow']}: conversion within {window['label']}"},
                        "yaxis": {"tickformat": ".0%", "rangemode": "tozero"},
                        "xaxis": {"type": "category"},
                        "legend": {"orientation": "h", "y": -0.2},
                    },
                }
            )
        page.grid(charts)


def _realism_section(page: _Page, realism: dict[str, Any]) -> None:
    page.section(
        f"Realism: the {realism['profile']} profile against published figures",
        "The dataset's own figures beside published e-commerce benchmarks; a range marks where a "
        "realistic default profile should fall.",
    )
    rows = []
    for r in realism["rows"]:
        value = r["value"]
        if isinstance(value, dict):
            shown = ", ".join(f"{_e(k)} {v:,.2f}" for k, v in value.items()) or "–"
        elif r["unit"] == "%":
            shown = _pct(value)
        else:
            shown = _num(value)
        if r["low"] is None and r["high"] is None:
            rng = "–"
        else:
            fmt = _pct if r["unit"] == "%" else _num
            low = fmt(r["low"]) if r["low"] is not None else ""
            high = fmt(r["high"]) if r["high"] is not None else ""
            rng = f"{low}–{high}"
        holds = r["holds"]
        mark = (
            ""
            if holds is None
            else ('<span class="ok">inside</span>' if holds else '<span class="bad">outside</span>')
        )
        rows.append([_e(r["metric"]), shown, _e(r["published"]), rng, mark, _e(r["source"])])
    page.raw(_table(["metric", "this dataset", "published", "range", "", "source"], rows))


# ---- load run ---------------------------------------------------------------------------------


def load_html(fig: dict[str, Any]) -> str:
    run, totals = fig["run"], fig["totals"]
    page = _Page(
        f"cdpsim load report: {run.get('scenario')} on {run.get('target')}",
        f"{fig['directory']} · profile {run.get('profile')} · {run.get('shape')} shape · "
        f"{run.get('users')} peak users · {run.get('processes')} process(es) · "
        f"{run.get('duration_s')} s of traffic",
    )
    verdict = str(fig["verdict"])
    page.section("Verdict")
    page.raw(
        f'<div class="verdict {"held" if verdict == "held" else "fail"}">verdict: {_e(verdict)}'
        f" (exit {_e(fig['exitCode'])})</div>"
    )
    for breach in fig["breaches"]:
        page.raw(f'<p class="bad">breach: {_e(breach)}</p>')
    rec = fig["reconciliation"]
    if rec is not None:
        keys = ["sent", "acknowledged", "stored", "lost", "duplicated", "cut_at_stop"]
        keys += [k for k in rec if k not in keys]
        page.raw(
            _table(
                ["reconciliation", *[_e(k.replace("_", " ")) for k in keys]],
                [["events", *[_num(rec.get(k)) for k in keys]]],
            )
        )
    else:
        page.raw(f'<p class="note">reconciliation omitted: {_e(fig["reconciliationOmitted"])}</p>')
    if totals.get("events_rejected"):
        page.raw(
            f'<p class="note">events rejected by the target: {_num(totals["events_rejected"])}</p>'
        )
    page.raw(
        _cards(
            [
                ("requests", _num(totals["requests"])),
                ("requests/s", _num(totals["rps"], 1)),
                ("failures", f"{_num(totals['failures'])} ({_pct(totals['fail_ratio'], 2)})"),
                ("events sent", _num(totals["events_sent"])),
                ("events/s", _num(totals["events_per_s"], 1)),
                ("events acknowledged", _num(totals["events_acknowledged"])),
            ]
        )
    )
    lat_rows = []
    for kind, lat in fig["latency"].items():
        if isinstance(lat, dict):
            lat_rows.append(
                [
                    _e(kind),
                    *[_num(lat.get(k), 3) for k in ("p50", "p95", "p99", "p999", "max", "mean")],
                ]
            )
    page.raw(
        _table(
            ["latency ms (HDR, all processes)", "p50", "p95", "p99", "p99.9", "max", "mean"],
            lat_rows,
        )
    )

    h = fig["history"]
    page.section(
        "Over time",
        "From Locust's per-second history (its percentiles cover a recent window of requests).",
    )
    charts = [
        {
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "requests/s",
                    "x": h["t"],
                    "y": h["rps"],
                },
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "failures/s",
                    "x": h["t"],
                    "y": h["failuresPerS"],
                    "line": {"color": _COLOURS[4]},
                },
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "users",
                    "x": h["t"],
                    "y": h["users"],
                    "yaxis": "y2",
                    "line": {"dash": "dot", "color": "#6b7280"},
                },
            ],
            "layout": {
                "title": {"text": "Throughput"},
                "xaxis": {"title": {"text": "seconds"}},
                "yaxis2": {"overlaying": "y", "side": "right", "title": {"text": "users"}},
                "legend": {"orientation": "h", "y": -0.25},
            },
        },
        {
            "data": [
                {"type": "scatter", "mode": "lines", "name": name, "x": h["t"], "y": h[key]}
                for key, name in (
                    ("p50", "p50"),
                    ("p95", "p95"),
                    ("p99", "p99"),
                    ("p999", "p99.9"),
                    ("max", "max"),
                )
            ],
            "layout": {
                "title": {"text": "Latency percentiles (ms)"},
                "xaxis": {"title": {"text": "seconds"}},
                "yaxis": {"rangemode": "tozero"},
                "legend": {"orientation": "h", "y": -0.25},
            },
        },
    ]
    over = fig.get("statusCodesOverTime")
    if over:
        codes = sorted({c for p in over for c in (p.get("codes") or {})})
        charts.append(
            {
                "data": [
                    {
                        "type": "bar",
                        "name": code,
                        "x": [p.get("t") for p in over],
                        "y": [(p.get("codes") or {}).get(code, 0) for p in over],
                    }
                    for code in codes
                ],
                "layout": {"title": {"text": "Status codes over time"}, "barmode": "stack"},
            }
        )
    else:
        ok = [
            None if r is None else max(0.0, r - (f or 0.0))
            for r, f in zip(h["rps"], h["failuresPerS"], strict=True)
        ]
        charts.append(
            {
                "data": [
                    {
                        "type": "bar",
                        "name": "answered without failure",
                        "x": h["t"],
                        "y": ok,
                        "marker": {"color": _COLOURS[2]},
                    },
                    {
                        "type": "bar",
                        "name": "failed",
                        "x": h["t"],
                        "y": h["failuresPerS"],
                        "marker": {"color": _COLOURS[4]},
                    },
                ],
                "layout": {
                    "title": {"text": "Answers per second: ok against failed"},
                    "barmode": "stack",
                    "xaxis": {"title": {"text": "seconds"}},
                    "legend": {"orientation": "h", "y": -0.25},
                },
            }
        )
    codes = fig["statusCodes"]
    charts.append(
        _bar("Status codes (whole run)", list(codes), list(codes.values()), "status", "answers")
    )
    page.grid(charts)
    if fig["endpoints"]:
        page.section("Requests by endpoint", "Locust's own statistics (ms).")
        page.raw(
            _table(
                [
                    "method",
                    "name",
                    "requests",
                    "failures",
                    "requests/s",
                    "p50",
                    "p95",
                    "p99",
                    "p99.9",
                    "max",
                ],
                [
                    [
                        _e(r["method"]),
                        _e(r["name"]),
                        *[
                            _num(r[k])
                            for k in (
                                "requests",
                                "failures",
                                "rps",
                                "p50",
                                "p95",
                                "p99",
                                "p999",
                                "max",
                            )
                        ],
                    ]
                    for r in fig["endpoints"]
                ],
                left=2,
            )
        )
    if fig["errors"]:
        page.raw(_table(["error", "count"], [[_e(k), _num(v)] for k, v in fig["errors"].items()]))
    if fig.get("locustReport"):
        page.raw(
            '<p class="note">Locust\'s own report is beside this file: '
            f"{_e(fig['locustReport'])}</p>"
        )
    return page.render(fig)


def write_report(text: str, out: Path) -> Path:
    """Written whole to a temporary name and renamed, so a reader never sees half a page."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def read_figures(page: str) -> dict[str, Any]:
    """The figures' data embedded in a report page."""
    start_tag = f'<script type="application/json" id="{FIGURES_ID}">'
    start = page.index(start_tag) + len(start_tag)
    end = page.index("</script>", start)
    data: dict[str, Any] = orjson.loads(page[start:end].replace("<\\/", "</"))
    return data
