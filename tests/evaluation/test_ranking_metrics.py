"""Ranking metrics against hand-computed cases and a plain-loop reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamer_hf.evaluation import (
    check_k_values,
    grouped_metrics,
    hit_matrix,
    merge_metrics,
    metric_keys,
    per_case_metrics,
    ranking_metrics,
)


def d(position: int) -> float:
    """Discount of a 0-based rank position."""
    return 1.0 / math.log2(position + 2)


@pytest.mark.parametrize(
    ("ranking", "truth", "k", "expected"),
    [
        # single relevant item at rank 2
        (["a", "b", "c"], ["b"], 1, {"HR": 0.0, "Recall": 0.0, "NDCG": 0.0}),
        (["a", "b", "c"], ["b"], 5, {"HR": 1.0, "Recall": 1.0, "NDCG": d(1)}),
        # |G| = 7 > K = 5: recall capped by K, ideal DCG over 5 positives
        (["a", "b", "c", "d", "e", "f"], list("acxyzwv"), 5,
         {"HR": 1.0, "Recall": 2 / 7, "NDCG": (d(0) + d(2)) / sum(d(i) for i in range(5))}),
        (["a", "b", "c", "d", "e", "f"], list("acxyzwv"), 1, {"HR": 1.0, "Recall": 1 / 7, "NDCG": 1.0}),
        # |G| = 2 < K = 5: ideal DCG over 2 positives
        (["x", "a", "y", "b"], ["a", "b"], 5, {"HR": 1.0, "Recall": 1.0, "NDCG": (d(1) + d(3)) / (d(0) + d(1))}),
        # no hits
        (["x", "y", "z"], ["a", "b"], 10, {"HR": 0.0, "Recall": 0.0, "NDCG": 0.0}),
        # a repeated hit earns once and still takes its slot
        (["a", "a", "b"], ["a", "b"], 2, {"HR": 1.0, "Recall": 0.5, "NDCG": d(0) / (d(0) + d(1))}),
        (["a", "a", "b"], ["a", "b"], 3, {"HR": 1.0, "Recall": 1.0, "NDCG": (d(0) + d(2)) / (d(0) + d(1))}),
        # duplicated ground truth is one set element
        (["b"], ["b", "b"], 1, {"HR": 1.0, "Recall": 1.0, "NDCG": 1.0}),
        # short and empty rankings: missing slots are misses
        (["a"], ["a", "b"], 10, {"HR": 1.0, "Recall": 0.5, "NDCG": 1.0 / (d(0) + d(1))}),
        ([], ["a"], 5, {"HR": 0.0, "Recall": 0.0, "NDCG": 0.0}),
    ],
)  # fmt: skip
def test_single_case_by_hand(ranking: list[str], truth: list[str], k: int, expected: dict[str, float]) -> None:
    got = ranking_metrics([ranking], [truth], k_values=[k])
    assert got == pytest.approx({f"{name}@{k}": value for name, value in expected.items()})


def test_means_over_cases_and_key_order() -> None:
    got = ranking_metrics([["a", "b"], ["c", "d"]], [["a"], ["d", "e"]], k_values=(2, 1))
    assert list(got) == metric_keys((1, 2)) == ["HR@1", "HR@2", "Recall@1", "Recall@2", "NDCG@1", "NDCG@2"]
    assert got["HR@1"] == pytest.approx(0.5)
    assert got["Recall@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert got["NDCG@2"] == pytest.approx((1.0 + d(1) / (d(0) + d(1))) / 2)


def test_hit_matrix_marks_first_occurrences_only() -> None:
    hits, sizes = hit_matrix([["a", "a", "x", "b", "b"]], [{"a", "b", "c"}], depth=4)
    assert hits.tolist() == [[True, False, False, True]]
    assert sizes.tolist() == [3]


def reference_metrics(ranking: list[str], truth: list[str], k: int) -> dict[str, float]:
    """Plain-loop definition, written independently of the vectorized code."""
    relevant = set(truth)
    dcg, found, seen = 0.0, 0, set()
    for position, item in enumerate(ranking[:k]):
        if item in relevant and item not in seen:
            dcg += 1.0 / math.log2(position + 2)
            found += 1
        seen.add(item)
    ideal = sum(1.0 / math.log2(p + 2) for p in range(min(k, len(relevant))))
    return {f"HR@{k}": float(found > 0), f"Recall@{k}": found / len(relevant), f"NDCG@{k}": dcg / ideal}


items = st.sampled_from([f"i{n}" for n in range(12)])


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.lists(items, max_size=12), st.lists(items, min_size=1, max_size=6)), min_size=1, max_size=8
    ),
    k_values=st.lists(st.integers(1, 12), min_size=1, max_size=4),
)
def test_vectorized_matches_reference(data: list[tuple[list[str], list[str]]], k_values: list[int]) -> None:
    rankings, truths = [r for r, _ in data], [t for _, t in data]
    per_case = per_case_metrics(rankings, truths, k_values)
    for row, (ranking, truth) in enumerate(data):
        for k in set(k_values):
            for key, value in reference_metrics(ranking, truth, k).items():
                assert per_case[key][row] == pytest.approx(value)
    for values in per_case.values():
        assert np.all((values >= 0) & (values <= 1 + 1e-12))


def test_merged_is_weighted_by_case_counts() -> None:
    per_behavior = {"click": {"HR@1": 0.2, "NDCG@1": 0.1}, "buy": {"HR@1": 0.8, "NDCG@1": 0.5}}
    merged = merge_metrics(per_behavior, {"click": 3, "buy": 1})
    assert merged == pytest.approx({"HR@1": (3 * 0.2 + 0.8) / 4, "NDCG@1": (3 * 0.1 + 0.5) / 4})


def test_grouped_then_merged_equals_pooled_mean() -> None:
    rankings = [["a", "b"], ["b"], ["c", "a"], ["x"]]
    truths = [["a"], ["a"], ["a", "c"], ["x"]]
    groups = ["buy", "click", "click", "click"]
    metrics, counts = grouped_metrics(rankings, truths, groups, (1, 2))
    assert counts == {"buy": 1, "click": 3}
    assert metrics["buy"] == ranking_metrics(rankings[:1], truths[:1], (1, 2))
    assert merge_metrics(metrics, counts) == pytest.approx(ranking_metrics(rankings, truths, (1, 2)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ranking_metrics([], []), "no test cases"),
        (lambda: ranking_metrics([["a"]], [[]]), "case 0 is empty"),
        (lambda: ranking_metrics([["a"]], [["a"], ["b"]]), "must align"),
        (lambda: check_k_values([]), "empty"),
        (lambda: check_k_values([5, 0]), "0"),
        (lambda: merge_metrics({"buy": {"HR@1": 1.0}}, {"click": 2}), "buy"),
        (lambda: merge_metrics({"buy": {"HR@1": 1.0}}, {"buy": 0}), "no test cases"),
        (lambda: grouped_metrics([["a"]], [["a"]], []), "must align"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
