"""Rule baselines every GAMER number is reported next to: most popular per behavior, and repeat.

Both follow the recommender contract of `Evaluator`: `fit(train)` then
`recommend(cases, top_k) -> list[list[str]]`, so they are scored by the same code path as the model.
`train` is either an events table (columns `item_id`, `behavior`; one row per interaction) or
training sequences (columns `history_items`, `history_behaviors`; one row per user, as in test
cases). It may be a `datasets.Dataset`, a pandas DataFrame, a dict of columns or a list of dicts.
Counting sequences that overlap (augmented views) would count interactions twice: pass one per user.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..data.id_lists import string_buffers
from ..modeling.item_index_gamer import ItemIndex
from .cases import EvalCase, as_cases

__all__ = ["ItemCounts", "MostPopular", "Repeat", "recent_distinct_items", "behavior_item_pairs"]

_EVENT_COLUMNS = ("behavior", "item_id")
_SEQUENCE_COLUMNS = ("history_behaviors", "history_items")
_TRAINING_COLUMNS = ("behaviors", "items")  # the rows of a prepared train split


def _column_names(train: Any) -> set[str]:
    if hasattr(train, "column_names"):  # datasets.Dataset
        return set(train.column_names)
    if hasattr(train, "columns"):  # pandas.DataFrame
        return {str(c) for c in train.columns}
    if isinstance(train, Mapping):  # dict of columns
        return set(train)
    if isinstance(train, Sequence) and train and isinstance(train[0], Mapping):
        return set(train[0])
    raise ValueError(
        f"training data of type {type(train).__name__} is empty or not a table: give a Dataset, DataFrame, "
        f"dict of columns or non-empty list of dicts with columns {list(_EVENT_COLUMNS)} or {list(_SEQUENCE_COLUMNS)}"
    )


def _column(train: Any, name: str) -> Iterable[Any]:
    if hasattr(train, "column_names") or hasattr(train, "columns") or isinstance(train, Mapping):
        return train[name]
    return (_cell(row, name, index) for index, row in enumerate(train))


def _cell(row: Mapping[str, Any], name: str, index: int) -> Any:
    if name not in row:
        raise ValueError(f"training row {index} lacks column {name!r}")
    return row[name]


def behavior_item_pairs(train: Any) -> Iterator[tuple[str, str]]:
    """Every training interaction as a (behavior, item) pair, from events or from sequences."""
    names = _column_names(train)
    if set(_EVENT_COLUMNS) <= names:
        for behavior, item in zip(*(_column(train, c) for c in _EVENT_COLUMNS)):
            yield str(behavior), str(item)
    elif set(_SEQUENCE_COLUMNS) <= names or set(_TRAINING_COLUMNS) <= names:
        columns = _SEQUENCE_COLUMNS if set(_SEQUENCE_COLUMNS) <= names else _TRAINING_COLUMNS
        for row, (behaviors, items) in enumerate(zip(*(_column(train, c) for c in columns))):
            if len(behaviors) != len(items):
                raise ValueError(
                    f"training row {row}: {columns[0]} has {len(behaviors)} entries, {columns[1]} {len(items)}"
                )
            yield from ((str(b), str(i)) for b, i in zip(behaviors, items))
    else:
        raise ValueError(
            f"training data has columns {sorted(names)}: expected events {list(_EVENT_COLUMNS)} "
            f"or sequences {list(_SEQUENCE_COLUMNS)} or {list(_TRAINING_COLUMNS)}"
        )


class ItemCounts(Mapping[str, int]):
    """Training interactions per item id, as one integer array over the rows of the training items' `ItemIndex`.

    Millions of items as Python Counters cost gigabytes; here they cost 8 bytes each. It reads as the Counter it
    replaces (items never counted are absent, so `counts.get(item, 0)` works); `MostPopular.pool_counts` looks up
    many at once.
    """

    def __init__(self, index: ItemIndex, counts: np.ndarray) -> None:
        self.index, self.array = index, counts

    def __getitem__(self, item: str) -> int:
        row = self.index.row(item)
        if row < 0 or not self.array[row]:
            raise KeyError(item)
        return int(self.array[row])

    def __iter__(self) -> Iterator[str]:
        ids = self.index.item_ids
        return (ids[row] for row in np.flatnonzero(self.array).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self.array))

    def items(self) -> Iterator[tuple[str, int]]:  # type: ignore[override]
        """(id, count) of the counted items in row order, without a search per id."""
        ids = self.index.item_ids
        rows = np.flatnonzero(self.array)
        return zip((ids[row] for row in rows.tolist()), self.array[rows].tolist())

    def top(self, n: int, skip: Collection[str] = ()) -> list[str]:
        """The n most counted items not in `skip`; ties go to the smaller item id (rows are in id order), so results
        never depend on the order of the training rows."""
        if n <= 0:
            return []
        rows = np.flatnonzero(self.array)
        want = n + len(skip)
        if want < len(rows):  # only the rows that can be among the first `want`: at least the want-th largest count
            values = self.array[rows]
            rows = rows[values >= np.partition(values, len(rows) - want)[len(rows) - want]]
        rows = rows[np.lexsort((rows, -self.array[rows]))]
        ids = self.index.item_ids
        return [item for item in (ids[row] for row in rows[:want].tolist()) if item not in skip][:n]


class MostPopular:
    """Per behavior, the items most often interacted with under it in training; overall popularity fills to K.

    A behavior with no training interactions gets the overall ranking. The list does not depend on the user.
    `counts[behavior]` and `overall` are `ItemCounts` over `index`, the training items in sorted order.
    """

    def __init__(self) -> None:
        self.index: ItemIndex | None = None
        self.counts: dict[str, ItemCounts] = {}
        self.overall: ItemCounts | None = None
        self._cache: dict[tuple[str, int], list[str]] = {}

    def fit(self, train: Any) -> MostPopular:
        """Count training interactions per behavior and overall (a Dataset in Arrow batches, others in Python)."""
        if isinstance(train, datasets.Dataset):
            total = _arrow_counts(train.data.table)
        else:
            pairs = Counter(behavior_item_pairs(train))
            total = pa.table({"behavior": pa.array([b for b, _ in pairs], pa.string()),
                              "item": pa.array([i for _, i in pairs], pa.string()),
                              "n": pa.array(list(pairs.values()), pa.int64())})
        if not total.num_rows:
            raise ValueError("training data holds no interactions: MostPopular has nothing to count")
        items = pc.unique(total["item"])
        items = items.take(pc.sort_indices(items))
        self.index = _sorted_index(items)
        self.counts, self._cache = _per_behavior(total, items, self.index), {}
        self.overall = ItemCounts(self.index, sum(c.array for c in self.counts.values()))
        return self

    def seen(self, items: Iterable[str]) -> list[str]:
        """Those of `items` that occur in training, in their order (what the cold slice needs of a sample's targets)."""
        items = list(items)
        return [item for item, row in zip(items, self._fitted().index.rows(items)) if row >= 0]

    def pool_counts(self, items: Sequence[str], behavior: str) -> np.ndarray:
        """[2, len(items)]: each item's training interactions under `behavior`, then under any behavior."""
        rows = self._fitted().index.rows(items)
        own = self.counts[behavior].array if behavior in self.counts else np.zeros(len(self.index), dtype=np.int64)
        found = rows >= 0
        out = np.zeros((2, len(items)), dtype=np.int64)
        out[0, found], out[1, found] = own[rows[found]], self.overall.array[rows[found]]
        return out

    def _fitted(self) -> MostPopular:
        if self.overall is None:
            raise RuntimeError("MostPopular is not fitted: call fit(train) first")
        return self

    def ranking(self, behavior: str, top_k: int) -> list[str]:
        """The top_k list for one behavior (fewer only when the whole catalogue seen in training is shorter)."""
        overall = self._fitted().overall
        key = (behavior, top_k)
        if key not in self._cache:
            own = self.counts[behavior].top(top_k) if behavior in self.counts else []
            self._cache[key] = own + overall.top(top_k - len(own), skip=set(own))
        return self._cache[key]

    def recommend(self, cases: Iterable[Mapping[str, Any] | EvalCase], top_k: int) -> list[list[str]]:
        """The requested behavior's popularity list for every case."""
        return [list(self.ranking(case.target_behavior, top_k)) for case in as_cases(cases)]


def _sorted_index(ids: pa.Array) -> ItemIndex:
    """An `ItemIndex` (no code columns) of sorted, distinct string ids: its rows are their positions, built from
    the Arrow buffers without Python strings (`ItemIndex.from_sorted_buffer` refuses NULs and checks the order)."""
    return ItemIndex.from_sorted_buffer(*string_buffers(ids), np.zeros((len(ids), 0), dtype=np.int64),
                                        "MostPopular's training items")


def _per_behavior(total: pa.Table, items: pa.Array, index: ItemIndex) -> dict[str, ItemCounts]:
    """`ItemCounts` per behavior of the summed (behavior, item, n) table, each an array over the rows of `index`
    (the sorted distinct `items`)."""
    rows = pc.index_in(total["item"], value_set=items).to_numpy()
    n = total["n"].to_numpy()
    behaviors = total["behavior"]
    counts = {}
    for behavior in pc.unique(behaviors).to_pylist():
        mask = pc.equal(behaviors, behavior).to_numpy(zero_copy_only=False)
        array = np.zeros(len(index), dtype=np.int64)
        array[rows[mask]] = n[mask]  # one row per (behavior, item) after the sum
        counts[behavior] = ItemCounts(index, array)
    return counts


_COUNT_BATCH = 1 << 16  # rows of a Dataset counted at once
_MERGE_AT = 1 << 22  # partial (behavior, item) counts held before they are summed into one table


def _arrow_counts(table: pa.Table) -> pa.Table:
    """(behavior, item, n): interactions per distinct (behavior, item) pair, counted by Arrow group-bys over
    batches of the (memory-mapped) table: memory follows the distinct pairs, never the rows."""
    names = set(table.column_names)
    if set(_EVENT_COLUMNS) <= names:
        columns, lists = _EVENT_COLUMNS, False
    elif set(_SEQUENCE_COLUMNS) <= names or set(_TRAINING_COLUMNS) <= names:
        columns, lists = (_SEQUENCE_COLUMNS if set(_SEQUENCE_COLUMNS) <= names else _TRAINING_COLUMNS), True
    else:
        raise ValueError(f"training data has columns {sorted(names)}: expected events {list(_EVENT_COLUMNS)} "
                         f"or sequences {list(_SEQUENCE_COLUMNS)} or {list(_TRAINING_COLUMNS)}")
    parts: list[pa.Table] = []
    held, row = 0, 0
    for batch in table.select(list(columns)).to_batches(max_chunksize=_COUNT_BATCH):
        behaviors, items = batch.column(0), batch.column(1)
        if lists:
            lengths = [pc.list_value_length(c).fill_null(0) for c in (behaviors, items)]
            bad = pc.indices_nonzero(pc.not_equal(*lengths))
            if len(bad):
                first = bad[0].as_py()
                raise ValueError(f"training row {row + first}: {columns[0]} has {lengths[0][first]} entries, "
                                 f"{columns[1]} {lengths[1][first]}")
            behaviors, items = pc.list_flatten(behaviors), pc.list_flatten(items)
        pairs = pa.table({"behavior": behaviors.cast(pa.string()), "item": items.cast(pa.string())})
        parts.append(pairs.group_by(["behavior", "item"]).aggregate([("item", "count")]).rename_columns(
            ["behavior", "item", "n"]))
        held, row = held + parts[-1].num_rows, row + batch.num_rows
        if held >= _MERGE_AT:
            parts, held = [_summed(parts)], 0
    if not parts:
        return pa.table({"behavior": pa.array([], pa.string()), "item": pa.array([], pa.string()),
                         "n": pa.array([], pa.int64())})
    return _summed(parts)


def _summed(parts: list[pa.Table]) -> pa.Table:
    """Partial counts added up per (behavior, item)."""
    merged = pa.concat_tables(parts).group_by(["behavior", "item"]).aggregate([("n", "sum")])
    return merged.rename_columns(["behavior", "item", "n"])


def recent_distinct_items(
    case: EvalCase, behaviors: Collection[str] | None = None, limit: int | None = None
) -> list[str]:
    """The case's distinct history items, most recent first, optionally only those seen under `behaviors`."""
    out: dict[str, None] = {}
    for behavior, item in zip(reversed(case.history_behaviors), reversed(case.history_items)):
        if limit is not None and len(out) >= limit:
            break
        if behaviors is None or behavior in behaviors:
            out.setdefault(item, None)
    return list(out)


class Repeat:
    """Recommend what the user touched most recently (distinct items, most recent first).

    By default the rule is pure: a user with fewer than K distinct history items gets a shorter list
    (the empty slots count as misses). `fill_with_popular=True` fills the rest with the requested
    behavior's `MostPopular` list, which then needs `fit(train)`; without it `fit` is a no-op.
    `behaviors` restricts the candidates to items the user interacted with under those behaviors.
    """

    def __init__(self, behaviors: Collection[str] | None = None, fill_with_popular: bool = False) -> None:
        self.behaviors = None if behaviors is None else frozenset(behaviors)
        self.fill_with_popular = fill_with_popular
        self.popular = MostPopular()

    def fit(self, train: Any) -> Repeat:
        """Fit the popularity filler when `fill_with_popular` is set (the pure rule learns nothing)."""
        if self.fill_with_popular:
            self.popular.fit(train)
        return self

    def recommend(self, cases: Iterable[Mapping[str, Any] | EvalCase], top_k: int) -> list[list[str]]:
        """Most recent distinct history items, then popular items if filling is on."""
        out = []
        for case in as_cases(cases):
            items = recent_distinct_items(case, self.behaviors, limit=top_k)
            if self.fill_with_popular and len(items) < top_k:
                seen = set(items)
                filler = (i for i in self.popular.ranking(case.target_behavior, 2 * top_k) if i not in seen)
                items += [item for _, item in zip(range(top_k - len(items)), filler)]
            out.append(items)
        return out
