"""Make code tuples unique, because the tokenizer must map every tuple back to exactly one item.

Two strategies:
- "append" (default): add one disambiguation level; an item's code there is its rank inside its
  collision group (ordered as the items were given), and that level's codebook size is the largest
  group. Semantic prefixes stay intact. Nothing is appended when the tuples are already distinct.
- "reassign": move colliding items (all but the first of each group) to last-level codes that no
  item with the same K-1 prefix uses, smallest free code first. Keeps K levels but blurs the last
  level's meaning; fails with a clear error when a prefix has no free codes left.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["COLLISION_STRATEGIES", "CollisionResolution", "collision_ranks", "prefix_keys", "resolve_collisions",
           "row_keys"]

COLLISION_STRATEGIES = ("append", "reassign")


@dataclass(frozen=True)
class CollisionResolution:
    """Unique codes, their per-level codebook sizes, and which strategy actually changed anything."""

    codes: np.ndarray
    codebook_sizes: list[int]
    applied: str  # "none" when the input was already collision-free


def prefix_keys(codes: np.ndarray) -> Iterator[np.ndarray]:
    """For l = 1..K: one int64 per row, equal exactly for rows with equal codes in columns 1..l and ordered
    as those prefixes sort. `np.unique(axis=0)` sorts rows as opaque bytes, many times slower than these
    integers at millions of items."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [n, K], got shape {codes.shape}")
    if codes.size and codes.min() < 0:
        raise ValueError(f"codes must be non-negative, got {codes.min()}")
    key = np.zeros(len(codes), dtype=np.int64)
    for column in codes.T:
        width = int(column.max()) + 1 if column.size else 1
        if key.size and int(key.max()) >= (2**62) // width:  # would overflow: rank the prefixes densely first
            key = np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)
        key = key * width + column
        yield key


def row_keys(codes: np.ndarray) -> np.ndarray:
    """`prefix_keys` of the whole rows."""
    return deque(prefix_keys(codes), maxlen=1)[0]


def collision_ranks(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its rank inside the group of rows with the same tuple, and that group's size."""
    _, inverse, counts = np.unique(row_keys(codes), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    group_start = np.searchsorted(inverse[order], inverse[order], side="left")
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - group_start
    return rank, counts[inverse]


def _append_level(codes: np.ndarray, sizes: list[int], rank: np.ndarray) -> CollisionResolution:
    return CollisionResolution(
        codes=np.concatenate([codes, rank[:, None]], axis=1),
        codebook_sizes=[*sizes, int(rank.max()) + 1],
        applied="append",
    )


def _reassign_last_level(codes: np.ndarray, sizes: list[int], rank: np.ndarray) -> CollisionResolution:
    codes = codes.copy()
    used: dict[tuple[int, ...], set[int]] = {}
    for row in codes:
        used.setdefault(tuple(int(code) for code in row[:-1]), set()).add(int(row[-1]))
    for i in np.flatnonzero(rank > 0):
        prefix = tuple(int(code) for code in codes[i, :-1])
        taken = used[prefix]
        free = next((code for code in range(sizes[-1]) if code not in taken), None)
        if free is None:
            raise ValueError(
                f"collision strategy 'reassign': prefix {prefix} already uses all {sizes[-1]} last-level "
                "codes; use collisions='append' or a larger last-level codebook"
            )
        codes[i, -1] = free
        taken.add(free)
    return CollisionResolution(codes=codes, codebook_sizes=list(sizes), applied="reassign")


def resolve_collisions(
    codes: np.ndarray, codebook_sizes: Sequence[int], strategy: str = "append"
) -> CollisionResolution:
    """Return collision-free codes for `codes` `[n, K]` using `strategy` ("append" or "reassign")."""
    if strategy not in COLLISION_STRATEGIES:
        raise ValueError(f"unknown collision strategy {strategy!r}; choose one of {COLLISION_STRATEGIES}")
    codes = np.asarray(codes, dtype=np.int64)
    sizes = [int(size) for size in codebook_sizes]
    if codes.ndim != 2 or codes.shape[1] != len(sizes):
        raise ValueError(f"codes of shape {codes.shape} do not match {len(sizes)} codebook sizes")
    rank, _ = collision_ranks(codes)
    if not (rank > 0).any():
        return CollisionResolution(codes=codes, codebook_sizes=sizes, applied="none")
    if strategy == "append":
        return _append_level(codes, sizes, rank)
    return _reassign_last_level(codes, sizes, rank)
