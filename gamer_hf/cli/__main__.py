"""`python -m gamer_hf.cli` (what `accelerate launch -m gamer_hf.cli` runs): the `gamer-hf` command."""

import sys

from . import main

sys.exit(main())
