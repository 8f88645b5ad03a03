"""Chunked IDs (CID): each item's shuffled integer id written in base C with K digits.

CIDs need no embeddings and never collide, which makes them the baseline that tells whether
semantic structure in the codes helps at all. The shuffle keeps catalogue order (often correlated
with item age or popularity) out of the codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["chunked_ids", "min_cid_levels"]


def min_cid_levels(num_items: int, base: int) -> int:
    """Fewest base-`base` digits that give every one of `num_items` items its own number."""
    if base < 2:
        raise ValueError(f"CID base must be >= 2, got {base}")
    levels, capacity = 1, base
    while capacity < num_items:
        levels, capacity = levels + 1, capacity * base
    return levels


def chunked_ids(item_ids: Sequence[str], *, base: int = 64, num_levels: int | None = None, seed: int = 0) -> np.ndarray:
    """Codes `[n, K]` (most significant digit first) for `item_ids`, in their given order.

    Items are ranked by sorted id before the seeded shuffle, so the codes depend only on the set of
    items and the seed, never on input order. `num_levels=None` uses the fewest digits that fit.
    """
    ids = [str(item) for item in item_ids]
    if len(set(ids)) != len(ids):
        raise ValueError("chunked_ids: item_ids contain duplicates")
    needed = min_cid_levels(len(ids), base)
    levels = needed if num_levels is None else num_levels
    if levels < needed:
        raise ValueError(
            f"CID with {levels} base-{base} digits holds {base ** levels} items but the catalogue has "
            f"{len(ids)}; use num_levels >= {needed} or a larger base"
        )
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(len(ids))
    number = np.random.default_rng(seed).permutation(len(ids))[rank]
    powers = base ** np.arange(levels - 1, -1, -1, dtype=np.int64)
    return (number[:, None] // powers[None, :]) % base
