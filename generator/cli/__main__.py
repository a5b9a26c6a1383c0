"""`python -m generator.cli` runs the `cdpsim` command."""

import sys

from generator.cli import main

sys.exit(main())
