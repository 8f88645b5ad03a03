"""Arrow tables of training sequences and evaluation cases, built from index arrays (no row loops).

Row schemas:
    train:            user_id: str, behaviors: list[str], items: list[str],
                      behavior_numbers: list[int16], item_numbers: list[int32]
    validation/test:  user_id: str, history_behaviors: list[str], history_items: list[str],
                      target_behavior: str, target_items: list[str], history_behavior_numbers: list[int16],
                      history_item_numbers: list[int32], target_behavior_number: int16,
                      target_item_numbers: list[int32]

The number columns are the same behaviors and items as the name and id columns beside them, as positions in the
prepared folder's behavior table (metadata "behaviors", in order) and item id map (items.ids.arrow): the collator
turns them into tokens by gathers, once it knows the tokenizer's row of each item number and token of each
behavior number (`RowNumbers`: one lookup of the catalogue per run), instead of looking up every id of every batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .arrays import EventArrays, ranges_to_flat
from .augmentation import augmentation_keep_masks
from .splits import Cases

__all__ = ["training_table", "cases_table", "TRAIN_COLUMNS", "CASE_COLUMNS"]

TRAIN_COLUMNS = ("user_id", "behaviors", "items", "behavior_numbers", "item_numbers")
CASE_COLUMNS = ("user_id", "history_behaviors", "history_items", "target_behavior", "target_items",
                "history_behavior_numbers", "history_item_numbers", "target_behavior_number", "target_item_numbers")


def _list(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _numbers(codes: np.ndarray, kind: pa.DataType = pa.int32()) -> pa.Array:
    return pa.array(codes, kind)


def _take(ids: pa.Array, codes: np.ndarray) -> pa.Array:
    return ids.take(pa.array(codes, pa.int64()))


def training_table(
    arrays: EventArrays, train: np.ndarray, *, max_history: int | None, copies: int, seed: int,
    augment_offset: int = 0,
) -> tuple[pa.Table, dict[str, int]]:
    """One row per user and view: the original training history and up to `copies` augmented views.

    Augmentation drops before truncation; each view then keeps its last `max_history + 1`
    interactions. Augmented views shorter than 2 are skipped; the original is kept when non-empty.
    Rows are ordered by user, original first. `augment_offset`: training events of the users
    before these ones (a block of a larger log; see augmentation_keep_masks).
    """
    index = np.flatnonzero(train)
    users = arrays.users[index]
    views = np.vstack([np.ones((1, index.size), dtype=bool),
                       augmentation_keep_masks(users, arrays.behaviors[index], arrays.behavior_table, copies, seed,
                                                               offset=augment_offset)])
    window = max_history + 1 if max_history else None
    has_history = np.bincount(users, minlength=arrays.num_users) > 0
    keys, picks, skipped = [], [], 0
    for view, mask in enumerate(views):
        kept = np.flatnonzero(mask)
        kept_users = users[kept]
        counts = np.bincount(kept_users, minlength=arrays.num_users)
        long_enough = counts >= (1 if view == 0 else 2)
        skipped += int((has_history & ~long_enough).sum())
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        from_end = counts[kept_users] - 1 - (np.arange(kept.size) - starts[kept_users])
        select = long_enough[kept_users] & (from_end < window if window else True)
        keys.append(kept_users[select] * (copies + 1) + view)
        picks.append(kept[select])
    key, pick = np.concatenate(keys), np.concatenate(picks)
    order = np.argsort(key, kind="stable")  # views were appended in time order, so rows stay ordered
    key, events = key[order], index[pick[order]]
    row_start = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1] if key.size else np.zeros(0, dtype=np.int64)
    offsets = np.r_[row_start, key.size]
    row_key = key[row_start]
    names = pa.array(arrays.behavior_table.names)
    table = pa.table({
        "user_id": _take(arrays.user_ids, row_key // (copies + 1)),
        "behaviors": _list(offsets, _take(names, arrays.behaviors[events])),
        "items": _list(offsets, _take(arrays.item_ids, arrays.items[events])),
        "behavior_numbers": _list(offsets, _numbers(arrays.behaviors[events], pa.int16())),
        "item_numbers": _list(offsets, _numbers(arrays.items[events])),
    })
    stats = {
        "rows": int(row_key.size),
        "users": int(np.unique(row_key // (copies + 1)).size),
        "augmented_rows": int((row_key % (copies + 1) > 0).sum()),
        "skipped_short_views": skipped,
        "interactions": int(key.size),
        "history_events": int(index.size),
    }
    return table, stats


def cases_table(arrays: EventArrays, cases: Cases) -> pa.Table:
    """Evaluation rows: the prompt history, the requested behavior and the set of target items."""
    history_offsets, history = ranges_to_flat(cases.history_start, cases.history_end)
    names = pa.array(arrays.behavior_table.names)
    return pa.table({
        "user_id": _take(arrays.user_ids, cases.users),
        "history_behaviors": _list(history_offsets, _take(names, arrays.behaviors[history])),
        "history_items": _list(history_offsets, _take(arrays.item_ids, arrays.items[history])),
        "target_behavior": _take(names, cases.behaviors),
        "target_items": _list(cases.target_offsets, _take(arrays.item_ids, cases.target_items)),
        "history_behavior_numbers": _list(history_offsets, _numbers(arrays.behaviors[history], pa.int16())),
        "history_item_numbers": _list(history_offsets, _numbers(arrays.items[history])),
        "target_behavior_number": _numbers(cases.behaviors, pa.int16()),
        "target_item_numbers": _list(cases.target_offsets, _numbers(cases.target_items)),
    })
