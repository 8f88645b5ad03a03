"""Evaluate on a sample of users of a huge log, reading only what that sample needs.

A Taobao-sized test split holds about a million users' cases; decoding all of them takes hours and
building Python cases for all of them takes gigabytes. `sample_users` draws users (not cases: a
user's cases stay together, so per-user effects are not split) from the `user_id` column in Arrow,
and selects their rows of the memory-mapped split; only those rows are ever read into Python.
`distinct_items` gives the distinct ids of a list column (e.g. the sample's targets, whose training items
define the cold slice), batch by batch in Arrow, so its memory follows the distinct ids, not the rows.
"""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigurationError

__all__ = ["distinct_items", "sample_users"]

BATCH_ROWS = 65_536  # rows per Arrow batch: bounded memory on any split


def _arrow_batches(split: datasets.Dataset, columns: list[str]):
    """The split's columns as Arrow tables of BATCH_ROWS rows (a `select`ed split reads only its rows)."""
    return split.select_columns(columns).with_format("arrow").iter(batch_size=BATCH_ROWS)


def sample_users(split: datasets.Dataset, max_users: int | None, seed: int) -> datasets.Dataset:
    """The cases of `max_users` users drawn with `seed` (all cases when the split has no more users), in order."""
    if max_users is None:
        return split
    if max_users < 1:
        raise ConfigurationError(f"max_test_users must be >= 1 (or unset for every user), got {max_users}")
    users = pa.chunked_array([batch["user_id"] for batch in _arrow_batches(split, ["user_id"])],
                             type=split.features["user_id"].pa_type)
    distinct = pc.unique(users)
    if len(distinct) <= max_users:
        return split
    chosen = distinct.take(np.sort(np.random.default_rng(seed).choice(len(distinct), max_users, replace=False)))
    rows = np.flatnonzero(pc.is_in(users, value_set=chosen).to_numpy())
    return split.select(rows)


def distinct_items(split: datasets.Dataset, column: str = "items") -> set[str]:
    """Every item id in a list column of `split` (e.g. the training sequences' `items`), as str."""
    seen: set[str] = set()
    for batch in _arrow_batches(split, [column]):
        values = pc.unique(pc.list_flatten(batch[column]))
        seen.update(str(item) for item in values.to_pylist())
    return seen
