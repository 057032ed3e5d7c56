"""`python -m station`: the same as the `packcam` command."""

import sys

from station.cli import main

sys.exit(main())
