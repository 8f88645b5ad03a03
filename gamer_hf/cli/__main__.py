"""`python -m gamer_hf.cli ...` (what `accelerate launch -m gamer_hf.cli train ...` runs)."""

import sys

from . import main

sys.exit(main())
