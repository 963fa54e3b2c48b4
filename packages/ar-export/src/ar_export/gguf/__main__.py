"""`python -m ar_export.gguf FOLDER OUT.gguf [--mix q4_k_m]` (see ar_export.gguf.cli)."""

import sys

from .cli import main

sys.exit(main())
