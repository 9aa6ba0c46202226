"""`python -m fusionseg` runs the CLI."""

import sys

from fusionseg.cli import main

sys.exit(main())
