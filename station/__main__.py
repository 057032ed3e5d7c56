"""`python -m station`: the station's own commands and the proof commands (no web, no central)."""

import sys

from station.cli import main

sys.exit(main())
