"""The `cdpsim load` command: its flags are made from `generator.load.options.LoadOptions`."""

from __future__ import annotations

import inspect
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console

from generator.errors import CdpsimError

_DOC = (
    "Drive a Stream API endpoint with Locust; summarise, reconcile, judge the SLOs.\n\n"
    "Exit 0 when it held, 1 on an SLO breach (by default: more than 1% of requests failed, "
    "--max-fail-ratio), 3 when events were lost or duplicated (or the server could not "
    "account for them), 4 when the target cannot be reached, 130 when interrupted (Ctrl-C or "
    "SIGTERM; the reports are still written)."
)


def register(app: typer.Typer) -> None:
    # Imported here, and light: options.py imports neither Locust nor the model.
    from generator.load.options import LoadOptions, flags, value_type

    parameters = []
    for name, flag in flags().items():
        if flag.cli is None and not flag.argument:
            continue  # set by `cdpsim load` for its Locust processes
        default = getattr(LoadOptions(), name)
        kind: Any = str if flag.parse is not None else value_type(name)
        shown: Any = None if flag.parse is not None and default is not None else default
        if flag.parse is not None and default is not None:
            shown = str(default)
        if flag.argument:
            info: Any = typer.Argument(..., help=flag.help)
        else:
            assert flag.cli is not None
            info = typer.Option(
                shown,
                flag.cli,
                help=flag.help,
                min=flag.min,
                max=flag.max,
                metavar=flag.metavar,
                show_default=default is not None and default is not False,
            )
        optional = default is None and not flag.argument
        annotation = kind | None if optional else kind
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation
            )
        )

    def _load(**values: Any) -> None:
        _run(values)

    _load.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    _load.__annotations__ = {p.name: p.annotation for p in parameters}
    _load.__doc__ = _DOC
    app.command("load")(_load)


def _run(values: dict[str, Any]) -> None:
    # Imported here (Locust and the model are heavy) so other commands start fast.
    from generator.load.loadtest import LoadTest
    from generator.profile import resolve_profile

    test = LoadTest.from_cli({**values, "profile": resolve_profile(Path(values["profile"]))})
    # SIGTERM (`kill PID`) takes Ctrl-C's path: Locust stops and reports, the embedded
    # server drains, the temp dirs go, and the summary says the run was interrupted.
    # Put back afterwards: `main()` may run inside another program (tests, a notebook).
    before = signal.signal(signal.SIGTERM, _as_interrupt)
    try:
        summary = test.run(Console())  # type: ignore[attr-defined]  # from_cli: a LoadTest
    finally:
        signal.signal(signal.SIGTERM, before)
    if summary["verdict"] == "interrupted":
        raise typer.Exit(130)
    if summary["verdict"] == "unreconciled":
        raise CdpsimError(
            f"not reconciled: {summary['reconciliation_omitted']}", code=summary["exit_code"]
        )
    if summary["verdict"] == "events_lost":
        rec = summary["reconciliation"]
        raise CdpsimError(
            f"events lost or duplicated: {rec['lost']} acknowledged but not stored, "
            f"{rec['duplicated']} duplicated",
            code=summary["exit_code"],
        )
    if summary["exit_code"]:
        raise CdpsimError(
            "the run did not hold: " + "; ".join(summary["slo"]["breaches"]),
            code=summary["exit_code"],
        )


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
