"""Multi-behavior sequential augmentation (DESIGN.md section 5), vectorized over all users at once.

For x copies and each ratio r = k/x (k = 1..x), every user's view k drops
floor(n_b * k / (x * L_b)) randomly chosen interactions of each behavior b below the top level,
where n_b counts the user's b-interactions in the training history and L_b is b's 1-based
hierarchy rank. Top-level interactions are never dropped. Exact integer arithmetic keeps the
counts free of floating-point rounding. Views are seeded and reproducible: view k draws one
uniform number per event from its own stream (seed, k), so a block of users that starts `offset`
events into the training history draws exactly what the whole history would (`offset=`), and an
out-of-core preparation that builds sequences block by block gives the same views.
"""

from __future__ import annotations

import numpy as np

from .behaviors import BehaviorTable

__all__ = ["augmentation_keep_masks", "drop_counts"]


def drop_counts(counts: np.ndarray, hierarchy: np.ndarray, droppable: np.ndarray, k: int, copies: int) -> np.ndarray:
    """floor(n_b * (k / copies) / L_b) per (user, behavior) count, zero for top-level behaviors."""
    return np.where(droppable, (counts * k) // (copies * hierarchy), 0)


def augmentation_keep_masks(
    users: np.ndarray, behaviors: np.ndarray, table: BehaviorTable, copies: int, seed: int, offset: int = 0
) -> np.ndarray:
    """Boolean keep masks of shape (copies, n): row k-1 is view k over the given events.

    `users` and `behaviors` are codes of one split's events (users contiguous, time ascending);
    `behaviors` index `table.names`; `offset` is the position of the first of them in the whole
    training history. The original view (keep everything) is not included.
    """
    if copies < 0:
        raise ValueError(f"augment_copies must be >= 0, got {copies}")
    n = len(users)
    masks = np.ones((copies, n), dtype=bool)
    if copies == 0 or n == 0:
        return masks
    names = table.names
    hierarchy = np.array([table.hierarchy_rank(name) for name in names], dtype=np.int64)
    droppable = np.array([table.level(name) < table.top_level for name in names])
    group = users.astype(np.int64) * len(names) + behaviors
    for k in range(1, copies + 1):
        stream = np.random.PCG64(np.random.SeedSequence([seed, k]))
        stream.advance(offset)  # one 64-bit draw per event before this block
        # a random permutation inside every (user, behavior)
        order = np.lexsort((np.random.Generator(stream).random(n), group))
        grouped = group[order]
        starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
        sizes = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, sizes)
        group_behavior = grouped[starts] % len(names)
        quota = drop_counts(sizes, hierarchy[group_behavior], droppable[group_behavior], k, copies)
        masks[k - 1, order[rank < np.repeat(quota, sizes)]] = False
    return masks
