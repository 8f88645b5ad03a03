"""The ranking metrics as a Hugging Face `evaluate` module shipped inside the package.

`evaluate.load` copies the module script into its own cache and imports it from there, so the
script cannot use relative imports: it imports `gamer_hf.evaluation.metrics`, which therefore must be
installed (`pip install gamer-hf`, or `-e .`); evaluate names the missing package otherwise. Loading
needs no network: a local folder path never touches the Hub, also under HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["RANKING_METRIC_PATH", "load_ranking_metric"]

RANKING_METRIC_PATH: Path = Path(__file__).resolve().parent.parent / "metrics" / "gamer_ranking"


def load_ranking_metric(**kwargs: Any) -> Any:
    """`evaluate.load` of the shipped gamer_ranking module; kwargs go to `evaluate.load`."""
    import evaluate  # slow to import; only needed here

    return evaluate.load(str(RANKING_METRIC_PATH), **kwargs)
