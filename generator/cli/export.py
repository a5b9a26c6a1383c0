"""The `cdpsim export` command: a JSON-lines dataset as the data lake export or Batch API files."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console

from generator.errors import CdpsimError

__all__ = ["export_formats", "register"]

FORMATS = ("datalake", "batch")


def export_formats(
    directory: Path,
    to: str,
    *,
    out: Path | None = None,
    snapshots: str = "last",
    shard: tuple[int, int] = (1, 1),
    workers: int = 1,
    max_file_mb: float = 50.0,
    console: Console | None = None,
) -> None:
    """Write `to` (datalake or batch) from the dataset in `directory`, and say what was written."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    if to == "datalake":
        from generator.datalake.export import export_datalake

        lake = export_datalake(directory, out, snapshots=snapshots, shard=shard, workers=workers)
        rows = ", ".join(f"{k} {v:,}" for k, v in sorted(lake.rows.items()))
        console.print(
            f"[green]data lake[/] {lake.directory}: {len(lake.folders)} folder(s) "
            f"{lake.folders[0]}..{lake.folders[-1]}, part(s) {lake.parts} "
            f"in {time.perf_counter() - started:.1f}s"
        )
        console.print(f"  newest folder: {rows}")
    elif to == "batch":
        from generator.batch.files import export_batch

        files = export_batch(directory, out, limit=int(max_file_mb * 1_000_000))
        console.print(
            f"[green]batch[/] {files.directory}: {files.guests:,} guest upserts, "
            f"{files.orders:,} order inserts in {len(files.files)} file(s) "
            f"in {time.perf_counter() - started:.1f}s"
        )
    else:
        raise CdpsimError(f"--to {to!r}: use datalake or batch", 2)


def register(app: typer.Typer) -> None:
    @app.command("export")
    def _export(
        directory: Path = typer.Argument(..., help="A JSON-lines dataset made by cdpsim generate."),
        to: str = typer.Option(..., "--to", help="datalake (Parquet) or batch (Batch API files)."),
        out: Path | None = typer.Option(
            None, "--out", help="Where to write (default DIR/datalake or DIR/batch)."
        ),
        snapshots: str = typer.Option(
            "last", "--snapshots", help="datalake: last (newest folder only) or daily."
        ),
        shard: str = typer.Option(
            "1/1", "--shard", help="datalake: write only shard I of N's parts (I/N)."
        ),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
        max_file_mb: float = typer.Option(
            50.0, "--max-file-mb", min=0.01, help="batch: largest gzipped file, in MB."
        ),
    ) -> None:
        """Write a dataset as CDP's data lake export (Parquet) or as Batch API files."""
        from generator.cli.generate import _shard

        export_formats(
            directory,
            to,
            out=out,
            snapshots=snapshots,
            shard=_shard(shard),
            workers=workers,
            max_file_mb=max_file_mb,
        )
