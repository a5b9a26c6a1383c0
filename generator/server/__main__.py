"""`python -m generator.server ARGS` is `cdpsim serve ARGS` (what EmbeddedServer launches)."""

from __future__ import annotations

import sys

from generator.server.command import run_alone

if __name__ == "__main__":
    from generator.lifecycle import die_with_parent

    die_with_parent()
    sys.exit(run_alone(sys.argv[1:]))
