"""MostPopular and Repeat on a handcrafted training set (counts documented in conftest)."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest

from gamer_hf.evaluation import EvalCase, MostPopular, Repeat, as_cases, behavior_item_pairs, recent_distinct_items


def sequences_from(events: list[dict[str, str]]) -> list[dict[str, list[str]]]:
    """The same interactions as one training sequence per user."""
    users: dict[str, dict[str, list[str]]] = {}
    for e in events:
        seq = users.setdefault(e["user_id"], {"history_behaviors": [], "history_items": []})
        seq["history_behaviors"].append(e["behavior"])
        seq["history_items"].append(e["item_id"])
    return list(users.values())


@pytest.mark.parametrize(
    "as_table",
    [
        lambda ev: ev,
        lambda ev: datasets.Dataset.from_list(ev),
        lambda ev: pd.DataFrame(ev),
        lambda ev: {k: [e[k] for e in ev] for k in ev[0]},
        sequences_from,
        lambda ev: datasets.Dataset.from_list(sequences_from(ev)),
    ],
    ids=["event-dicts", "event-dataset", "event-dataframe", "event-columns", "sequence-dicts", "sequence-dataset"],
)
def test_training_formats_give_the_same_pairs(train_events: list[dict[str, str]], as_table) -> None:
    expected = sorted((e["behavior"], e["item_id"]) for e in train_events)
    assert sorted(behavior_item_pairs(as_table(train_events))) == expected


@pytest.mark.parametrize(
    ("behavior", "expected"),
    [
        ("click", ["i1", "i2", "i4"]),  # i2 and i4 tie at 1: smaller id first
        ("cart", ["i3", "i1", "i2"]),  # only i3 under cart; overall popularity fills, i3 not repeated
        ("buy", ["i2", "i3", "i1"]),
        ("fav", ["i1", "i2", "i3"]),  # unseen behavior: overall popularity
    ],
)
def test_most_popular_per_behavior(train_events, behavior: str, expected: list[str]) -> None:
    popular = MostPopular().fit(train_events)
    case = EvalCase("u", ("click",), ("i9",), behavior, ("i1",))
    assert popular.recommend([case], top_k=3) == [expected]


def test_most_popular_does_not_depend_on_row_order(train_events) -> None:
    forward = MostPopular().fit(train_events).ranking("click", 4)
    assert MostPopular().fit(train_events[::-1]).ranking("click", 4) == forward
    assert MostPopular().fit(train_events).ranking("click", 10) == ["i1", "i2", "i4", "i3"]  # catalogue has 4


def test_most_popular_errors(train_events) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        MostPopular().ranking("buy", 3)
    with pytest.raises(ValueError, match=r"columns \['a'\]"):
        MostPopular().fit([{"a": 1}])
    with pytest.raises(ValueError, match="empty or not a table"):
        MostPopular().fit([])
    with pytest.raises(ValueError, match="training row 1 lacks column 'item_id'"):
        MostPopular().fit([train_events[0], {"behavior": "buy"}])


@pytest.fixture
def history_case() -> EvalCase:
    return as_cases([{
        "user_id": "u", "history_behaviors": ["click", "cart", "click", "click", "buy"],
        "history_items": ["a", "b", "a", "c", "c"], "target_behavior": "buy", "target_items": ["a"],
    }])[0]  # fmt: skip


@pytest.mark.parametrize(
    ("behaviors", "limit", "expected"),
    [(None, None, ["c", "a", "b"]), (None, 2, ["c", "a"]), (None, 0, []), ({"cart"}, None, ["b"]),
     ({"click", "cart"}, None, ["c", "a", "b"]), ({"fav"}, None, [])],
)  # fmt: skip
def test_recent_distinct_items(history_case, behaviors, limit, expected) -> None:
    assert recent_distinct_items(history_case, behaviors, limit) == expected


def test_repeat_is_pure_by_default(history_case) -> None:
    assert Repeat().recommend([history_case], top_k=5) == [["c", "a", "b"]]
    assert Repeat().recommend([history_case], top_k=2) == [["c", "a"]]
    assert Repeat(behaviors=["cart"]).recommend([history_case], top_k=5) == [["b"]]


def test_repeat_fills_with_the_behaviors_popular_items(history_case, train_events) -> None:
    repeat = Repeat(fill_with_popular=True).fit(train_events)
    # buy popularity is i2, i3, i1, i4; history items come first and nothing repeats
    assert repeat.recommend([history_case], top_k=5) == [["c", "a", "b", "i2", "i3"]]
    with pytest.raises(RuntimeError, match="not fitted"):
        Repeat(fill_with_popular=True).recommend([history_case], top_k=5)


def test_baselines_accept_raw_rows(case_rows, train_events) -> None:
    assert Repeat().recommend(case_rows[:1], top_k=10) == [["i2", "i1"]]
    assert MostPopular().fit(train_events).recommend(case_rows[:1], top_k=1) == [["i2"]]
