"""MostPopular.fit counts a Dataset in Arrow batches: the same counts as the pair-by-pair count, and the same
rankings (ties included) as the Python Counters it kept before its counts became arrays."""

from __future__ import annotations

import heapq
from collections import Counter

import datasets
import pandas as pd
import pytest

from gamer_hf.data import SYNTHETIC_BEHAVIORS, PreparedData, generate_synthetic, prepare
from gamer_hf.evaluation import MostPopular, baselines, behavior_item_pairs


@pytest.fixture(scope="module")
def prepared() -> PreparedData:
    events, _ = generate_synthetic(num_users=150, num_items=80, seed=3)
    return prepare(events, behaviors=SYNTHETIC_BEHAVIORS, max_history=10, augment_copies=1, progress=False)


def _python_counts(train: datasets.Dataset) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for behavior, item in behavior_item_pairs(train):
        counts.setdefault(behavior, Counter())[item] += 1
    return counts


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 7 rows and a merge after 20 partial counts, so both paths of the batching run."""
    monkeypatch.setattr(baselines, "_COUNT_BATCH", 7)
    monkeypatch.setattr(baselines, "_MERGE_AT", 20)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_arrow_counts_equal_python_counts_on_a_prepared_split(prepared, small_batches, split: str) -> None:
    rows = prepared.splits[split]
    if split == "validation":  # sequences under the history columns, as evaluation cases hold them
        rows = rows.select_columns(["history_behaviors", "history_items"])
    popular = MostPopular().fit(rows)
    assert popular.counts == _python_counts(rows)
    assert popular.overall == sum(_python_counts(rows).values(), Counter())
    assert popular.ranking("buy", 5) == MostPopular().fit(rows.to_list()).ranking("buy", 5)


def test_arrow_counts_of_an_events_dataset() -> None:
    events = datasets.Dataset.from_dict({"behavior": ["click", "buy", "click", "click"], "item_id": [1, 2, 1, 3]})
    popular = MostPopular().fit(events)
    assert popular.counts == {"click": Counter({"1": 2, "3": 1}), "buy": Counter({"2": 1})}


@pytest.mark.parametrize(("columns", "message"), [
    ({"behaviors": [["click"], ["click", "buy"]], "items": [["i1"], ["i1"]]}, "training row 1: behaviors has 2"),
    ({"user": ["u"]}, "training data has columns"),
])
def test_arrow_counts_refuse_bad_rows(small_batches, columns: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MostPopular().fit(datasets.Dataset.from_dict(columns))


def test_an_empty_dataset_has_nothing_to_count() -> None:
    empty = datasets.Dataset.from_dict({"behaviors": [], "items": []},
                                       features=datasets.Features({"behaviors": datasets.List(datasets.Value("string")),
                                                                   "items": datasets.List(datasets.Value("string"))}))
    with pytest.raises(ValueError, match="nothing to count"):
        MostPopular().fit(empty)


def _reference_ranking(counts: dict[str, Counter[str]], overall: Counter[str], behavior: str, top_k: int) -> list[str]:
    """The ranking as MostPopular computed it over Python Counters (before the arrays): heapq on (-count, id)."""
    def top(counter: Counter[str], n: int, skip: set[str]) -> list[str]:
        ranked = heapq.nsmallest(n + len(skip), counter.items(), key=lambda kv: (-kv[1], kv[0]))
        return [item for item, _ in ranked if item not in skip][:n]

    own = top(counts.get(behavior, Counter()), top_k, set())
    return own + top(overall, top_k - len(own), set(own))


@pytest.fixture(scope="module")
def real_events(data_dir) -> pd.DataFrame:
    """The first 30,000 events of retail_beh_mbht: many items tie at low counts, cart and buy are sparse."""
    return pd.read_csv(data_dir / "retail_beh_mbht" / "events.csv.gz", nrows=30_000, dtype={"item_id": str})


@pytest.mark.realdata
@pytest.mark.parametrize("as_dataset", [False, True], ids=["python", "arrow"])
def test_rankings_equal_the_counter_rankings_ties_included_on_real_events(real_events,
                                                                            as_dataset: bool) -> None:
    reference = _python_counts(real_events)
    overall = sum(reference.values(), Counter())
    popular = MostPopular().fit(datasets.Dataset.from_pandas(real_events) if as_dataset else real_events)
    assert popular.counts == reference
    for behavior in [*reference, "unseen"]:
        for top_k in (1, 10, 300):  # 300 cuts through runs of tied counts
            assert popular.ranking(behavior, top_k) == _reference_ranking(reference, overall, behavior, top_k), (behavior, top_k)
    pool = list(real_events["item_id"].iloc[:50]) + ["never-seen"]
    counts = popular.pool_counts(pool, "buy")
    assert counts.tolist() == [[reference["buy"][i] for i in pool], [overall[i] for i in pool]]
    assert popular.seen(["never-seen", pool[0]]) == [pool[0]]
