"""User/item filters that remove whole users or items; every removal lands in the drop report."""

from __future__ import annotations

import numpy as np

from .arrays import EventArrays
from .report import DropReport

__all__ = ["filter_min_user_events", "filter_k_core"]


def _ids(ids, codes: np.ndarray, limit: int = 5) -> list[str]:
    return [ids[int(c)].as_py() for c in codes[:limit]]


def filter_min_user_events(arrays: EventArrays, minimum: int, report: DropReport, *, file: str) -> EventArrays:
    """Drop users with fewer than `minimum` events (they can give neither context nor a target)."""
    if minimum <= 1:
        return arrays
    counts = np.bincount(arrays.users, minlength=arrays.num_users)
    small = np.flatnonzero(counts < minimum)
    if small.size == 0:
        return arrays
    drop = np.isin(arrays.users, small)
    report.add(f"{small.size:,} users with fewer than {minimum} events", file=file, column="user_id", rows=[],
               values=_ids(arrays.user_ids, small), count=int(drop.sum()))
    return arrays.take(np.flatnonzero(~drop))


def filter_k_core(arrays: EventArrays, k: int, report: DropReport, *, file: str) -> EventArrays:
    """Iteratively keep users and items with at least `k` events each (the usual k-core filter)."""
    if k <= 1:
        return arrays
    keep = np.ones(len(arrays), dtype=bool)
    dropped_users: list[np.ndarray] = []
    dropped_items: list[np.ndarray] = []
    while True:
        user_counts = np.bincount(arrays.users[keep], minlength=arrays.num_users)
        item_counts = np.bincount(arrays.items[keep], minlength=arrays.num_items)
        weak_users = np.flatnonzero((user_counts > 0) & (user_counts < k))
        weak_items = np.flatnonzero((item_counts > 0) & (item_counts < k))
        if weak_users.size == 0 and weak_items.size == 0:
            break
        dropped_users.append(weak_users)
        dropped_items.append(weak_items)
        keep &= ~np.isin(arrays.users, weak_users) & ~np.isin(arrays.items, weak_items)
    if keep.all():
        return arrays
    users = np.unique(np.concatenate(dropped_users))
    items = np.unique(np.concatenate(dropped_items))
    report.add(f"{k}-core filter: {users.size:,} users and {items.size:,} items with fewer than {k} events",
               file=file, column="user_id,item_id", rows=[],
               values=_ids(arrays.user_ids, users, 3) + _ids(arrays.item_ids, items, 3), count=int((~keep).sum()))
    return arrays.take(np.flatnonzero(keep))
