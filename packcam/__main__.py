"""`python -m packcam`: the same as the `packcam` command."""

import sys

from packcam.cli import main

sys.exit(main())
