"""`python -m generator.cli` runs the `cdpsim` command."""

from generator.cli import run

run()
