"""Where a model can win: test cases split by whether their targets are already known to the user or the model.

- repeat: some target item is in the prompt (the user comes back to it). Repeat rules own this slice;
- explore: no target item is in the prompt. Repeat rules score zero here by construction, so this is
  where generation has to earn its place;
- cold: explore cases whose targets were all absent from training (no model saw them; a generator
  can only reach them through shared semantic-ID prefixes). Cold cases are also explore cases.

Cold needs the set of training items; without it only repeat and explore are reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .cases import EvalCase

__all__ = ["SLICES", "REPEAT", "EXPLORE", "COLD", "case_slice", "items_seen", "slice_labels", "slice_mask"]

REPEAT, EXPLORE, COLD = "repeat", "explore", "cold"
SLICES: tuple[str, ...] = (REPEAT, EXPLORE, COLD)


def items_seen(sequences: Iterable[Iterable[str]]) -> set[str]:
    """Every item id in `sequences` (e.g. the `items` column of a prepared train split), as str."""
    return {str(item) for sequence in sequences for item in sequence}


def case_slice(case: EvalCase, known_items: set[str] | None = None) -> str:
    """The finest slice of one case: "repeat", "cold" (explore and unseen in training) or "explore"."""
    if set(case.target_items) & set(case.history_items):
        return REPEAT
    if known_items is not None and not any(item in known_items for item in case.target_items):
        return COLD
    return EXPLORE


def slice_labels(cases: Sequence[EvalCase], known_items: Iterable[str] | None = None) -> list[str]:
    """`case_slice` of every case; `known_items` are the item ids seen in training (None: no cold label)."""
    known = None if known_items is None else {str(item) for item in known_items}
    return [case_slice(case, known) for case in cases]


def slice_mask(labels: Sequence[str], name: str) -> np.ndarray:
    """Bool mask of the cases in slice `name`; "explore" includes the cold cases."""
    if name not in SLICES:
        raise ValueError(f"unknown slice {name!r}; choose one of {SLICES}")
    members = {EXPLORE, COLD} if name == EXPLORE else {name}
    return np.fromiter((label in members for label in labels), dtype=bool, count=len(labels))
