"""`python -m ar_cli ...` runs the `ar` command line."""

import sys

from .main import main

sys.exit(main())
