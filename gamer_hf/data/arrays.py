"""Integer-coded view of an event log, the working form of every vectorized step.

Codes are contiguous and follow first appearance in the canonical order; the string ids stay
available (`user_ids`, `item_ids`) because tokenizers and outputs speak in original ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .behaviors import BehaviorTable
from .events import EventLog

__all__ = ["EventArrays", "ranges_to_flat"]


def _encode(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    encoded = pc.dictionary_encode(column.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


@dataclass
class EventArrays:
    """Events sorted by user then time; `users`, `items`, `behaviors` are codes into the id tables."""

    users: np.ndarray
    items: np.ndarray
    behaviors: np.ndarray
    time: np.ndarray
    user_ids: pa.Array
    item_ids: pa.Array
    behavior_table: BehaviorTable
    given_sessions: np.ndarray | None = None

    @classmethod
    def from_log(cls, log: EventLog) -> "EventArrays":
        table = log.events.data.table
        users, user_ids = _encode(table["user_id"])
        items, item_ids = _encode(table["item_id"])
        names = pa.array(log.behaviors.names)
        behaviors = pc.index_in(table["behavior"].combine_chunks(), value_set=names).to_numpy(zero_copy_only=False)
        given = _encode(table["session_id"])[0] if "session_id" in table.column_names else None
        return cls(users, items, behaviors.astype(np.int64), table["timestamp"].to_numpy(), user_ids, item_ids,
                   log.behaviors, given)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def user_bounds(self) -> np.ndarray:
        """Start index of every user's block, plus the total length (users are contiguous)."""
        return np.searchsorted(self.users, np.arange(self.num_users + 1))

    def take(self, index: np.ndarray) -> "EventArrays":
        """Rows by index or mask, with user and item codes compacted to the survivors."""
        users, user_ids = _compact(self.users[index], self.user_ids)
        items, item_ids = _compact(self.items[index], self.item_ids)
        given = self.given_sessions[index] if self.given_sessions is not None else None
        return EventArrays(users, items, self.behaviors[index], self.time[index], user_ids, item_ids,
                           self.behavior_table, given)

    def permuted(self, order: np.ndarray) -> "EventArrays":
        """The rows in `order` (a permutation of all of them), codes and id maps unchanged: item codes stay the
        positions in the item id map that prepare saves, which the splits' item numbers are."""
        given = self.given_sessions[order] if self.given_sessions is not None else None
        return EventArrays(self.users[order], self.items[order], self.behaviors[order], self.time[order],
                           self.user_ids, self.item_ids, self.behavior_table, given)

    def behavior_counts(self) -> dict[str, int]:
        counts = np.bincount(self.behaviors, minlength=len(self.behavior_table))
        return {name: int(count) for name, count in zip(self.behavior_table.names, counts)}


def _compact(codes: np.ndarray, ids: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Renumber surviving codes 0..n-1 in order of first appearance."""
    present, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), ids.take(pa.array(present[order]))


def ranges_to_flat(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """List offsets and flat indices for the half-open ranges [start, end) (a vectorized concat)."""
    lengths = (ends - starts).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return offsets, flat
