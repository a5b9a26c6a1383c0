"""Building a report page for a directory: a dataset, or a `cdpsim load --report` directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from generator.errors import CdpsimError

__all__ = ["REPORT_NAME", "build_report", "compute_figures", "write_load_page"]

REPORT_NAME = "cdpsim-report.html"


def compute_figures(
    directory: Path, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    from generator.report.load_report import compute_load_figures, is_load_report

    if is_load_report(directory):
        return compute_load_figures(directory)
    from generator.report.dataset_report import compute_dataset_figures

    figures = compute_dataset_figures(directory, progress)
    figures["kind"] = "dataset"
    return figures


def build_report(
    directory: Path,
    out: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write the page (by default DIR/cdpsim-report.html); returns its path and the figures."""
    from generator.report.html import dataset_html, load_html, write_report

    figures = compute_figures(directory, progress)
    page = load_html(figures) if figures["kind"] == "load" else dataset_html(figures)
    return write_report(page, out or directory / REPORT_NAME), figures


def write_load_page(directory: Path, console: Any) -> None:
    """The end of `cdpsim load --report DIR`: the page beside Locust's; a failure to draw it
    is a warning, never the run's outcome."""
    try:
        path, _ = build_report(directory)
    except (CdpsimError, OSError, ValueError) as exc:
        console.print(f"[yellow]warning:[/] no {REPORT_NAME}: {exc}")
        return
    console.print(f"report: {path}", highlight=False)
