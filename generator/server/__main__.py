"""`python -m generator.server ARGS` is `cdpsim serve ARGS` (what EmbeddedServer launches)."""

from __future__ import annotations

import sys

from generator.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
