"""`python -m station.proof`: the proof commands on their own (keys, ca, export, verify, audit)."""

import sys

from station.proof.cli import main

sys.exit(main())
