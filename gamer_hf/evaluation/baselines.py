"""Rule baselines every GAMER number is reported next to: most popular per behavior, and repeat.

Both follow the recommender contract of `Evaluator`: `fit(train)` then
`recommend(cases, top_k) -> list[list[str]]`, so they are scored by the same code path as the model.
`train` is either an events table (columns `item_id`, `behavior`; one row per interaction) or
training sequences (columns `history_items`, `history_behaviors`; one row per user, as in test
cases). It may be a `datasets.Dataset`, a pandas DataFrame, a dict of columns or a list of dicts.
Counting sequences that overlap (augmented views) would count interactions twice: pass one per user.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from .cases import EvalCase, as_cases

__all__ = ["MostPopular", "Repeat", "recent_distinct_items", "behavior_item_pairs"]

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


def _top(counts: Counter[str], n: int, skip: Collection[str] = ()) -> list[str]:
    """The n most counted items not in `skip`; ties go to the smaller item id so results never depend on row order."""
    ranked = heapq.nsmallest(n + len(skip), counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [item for item, _ in ranked if item not in skip][:n]


class MostPopular:
    """Per behavior, the items most often interacted with under it in training; overall popularity fills to K.

    A behavior with no training interactions gets the overall ranking. The list does not depend on the user.
    """

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.overall: Counter[str] = Counter()
        self._cache: dict[tuple[str, int], list[str]] = {}

    def fit(self, train: Any) -> MostPopular:
        """Count training interactions per behavior and overall (a Dataset in Arrow batches, others in Python)."""
        if isinstance(train, datasets.Dataset):
            counts = _arrow_counts(train.data.table)
        else:
            counts = {}
            for behavior, item in behavior_item_pairs(train):
                counts.setdefault(behavior, Counter())[item] += 1
        if not counts:
            raise ValueError("training data holds no interactions: MostPopular has nothing to count")
        self.counts = counts
        self.overall = sum(counts.values(), Counter())
        self._cache = {}
        return self

    def ranking(self, behavior: str, top_k: int) -> list[str]:
        """The top_k list for one behavior (fewer only when the whole catalogue seen in training is shorter)."""
        if not self.overall:
            raise RuntimeError("MostPopular is not fitted: call fit(train) first")
        key = (behavior, top_k)
        if key not in self._cache:
            own = _top(self.counts.get(behavior, Counter()), top_k)
            self._cache[key] = own + _top(self.overall, top_k - len(own), skip=set(own))
        return self._cache[key]

    def recommend(self, cases: Iterable[Mapping[str, Any] | EvalCase], top_k: int) -> list[list[str]]:
        """The requested behavior's popularity list for every case."""
        return [list(self.ranking(case.target_behavior, top_k)) for case in as_cases(cases)]


_COUNT_BATCH = 1 << 16  # rows of a Dataset counted at once
_MERGE_AT = 1 << 22  # partial (behavior, item) counts held before they are summed into one table


def _arrow_counts(table: pa.Table) -> dict[str, Counter[str]]:
    """Per behavior, item -> interactions, counted by Arrow group-bys over batches of the (memory-mapped)
    table: memory follows the distinct (behavior, item) pairs, never the rows."""
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
        return {}
    total = _summed(parts)
    counts: dict[str, Counter[str]] = {}
    for behavior in pc.unique(total["behavior"]).to_pylist():
        own = total.filter(pc.equal(total["behavior"], behavior))
        counts[behavior] = Counter(dict(zip(own["item"].to_pylist(), own["n"].to_pylist())))
    return counts


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
