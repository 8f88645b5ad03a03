"""history_share (how much of a list is the user's own items) and WithoutHistory (any recommender, history excluded)."""

from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.evaluation import EvalCase, MostPopular, Repeat, WithoutHistory, history_share

CASES = [EvalCase("u1", ("click", "cart"), ("a", "b"), "buy", ("c",)),
         EvalCase("u2", ("click",), ("d",), "buy", ("d",))]


@pytest.fixture()
def popular() -> MostPopular:
    return MostPopular().fit({"behaviors": [["buy"] * 5, ["buy", "click"]], "items": [["a", "b", "c", "d", "e"], ["a", "f"]]})


def test_history_share_counts_history_items_among_the_first_k_slots() -> None:
    shares = history_share([["a", "x", "b", "y"], ["x", "d"]], CASES, k=2)
    assert shares == pytest.approx(np.array([0.5, 0.5]))
    assert history_share([["a"], []], CASES, k=10) == pytest.approx(np.array([0.1, 0.0]))  # short lists: k slots
    with pytest.raises(ValueError, match="1 rankings for 2 cases"):
        history_share([["a"]], CASES)
    with pytest.raises(ValueError, match="k must be >= 1"):
        history_share([[], []], CASES, k=0)


@pytest.mark.parametrize("make", [lambda popular: popular, lambda popular: Repeat()])
def test_without_history_drops_history_items_and_keeps_lists_full(popular, make) -> None:
    recommender = make(popular)
    lists = WithoutHistory(recommender).recommend(CASES, 3)
    assert history_share(lists, CASES, k=3).sum() == 0.0
    expected = [[item for item in row if item not in case.history_items][:3]
                for row, case in zip(recommender.recommend(CASES, 3 + 2), CASES)]
    assert lists == expected
    if recommender is popular:
        assert [len(row) for row in lists] == [3, 3]  # it asked for enough items to fill the lists


def test_without_history_needs_a_recommender() -> None:
    with pytest.raises(TypeError, match="no recommend"):
        WithoutHistory(object())
