"""Ranking metrics for top-K recommendation against ground-truth item sets (pure numpy).

A test case has a ranked list of item ids (best first) and a ground-truth *set* G. Per case:

- HR@K: 1 if any item of G is in the top K, else 0;
- Recall@K: |G ∩ top K| / |G| (so it stays below 1 when |G| > K);
- NDCG@K: DCG with binary gains, sum over hit positions i (0-based) of 1 / log2(i + 2),
  divided by the ideal DCG over min(K, |G|) positives.

An item repeated in a ranking occupies every slot it takes but earns its gain only at its first
position: a recommender cannot score twice by listing a hit twice, and every metric stays <= 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_K_VALUES",
    "METRIC_NAMES",
    "MERGED",
    "metric_key",
    "metric_keys",
    "check_k_values",
    "hit_matrix",
    "per_case_metrics",
    "ranking_metrics",
    "grouped_metrics",
    "group_means",
    "merge_metrics",
]

DEFAULT_K_VALUES: tuple[int, ...] = (1, 5, 10)
METRIC_NAMES: tuple[str, ...] = ("HR", "Recall", "NDCG")
MERGED = "merged"  # the row name of the case-weighted average over behaviors


def metric_key(name: str, k: int) -> str:
    """The one spelling of a metric name used in results, JSON and the evaluate module: 'NDCG@10'."""
    return f"{name}@{k}"


def metric_keys(k_values: Sequence[int] = DEFAULT_K_VALUES) -> list[str]:
    """All metric keys in reporting order: every metric name, each for every K."""
    return [metric_key(name, k) for name in METRIC_NAMES for k in check_k_values(k_values)]


def check_k_values(k_values: Iterable[int]) -> tuple[int, ...]:
    """Sorted distinct cut-offs; rejects empty, non-integer or non-positive values with the offending value."""
    values = list(k_values)
    if not values:
        raise ValueError("k_values is empty: give at least one cut-off such as (1, 5, 10)")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k_values must be positive integers, got {k!r} in {values!r}")
    return tuple(sorted({int(k) for k in values}))


def hit_matrix(
    rankings: Sequence[Sequence[str]], ground_truths: Sequence[Iterable[str]], depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bool [N, depth] matrix of first-occurrence hits, and int [N] ground-truth set sizes.

    Rankings shorter than `depth` count their missing slots as misses; longer ones are cut.
    """
    if len(rankings) != len(ground_truths):
        raise ValueError(f"{len(rankings)} rankings but {len(ground_truths)} ground truths: they must align")
    hits = np.zeros((len(rankings), depth), dtype=bool)
    sizes = np.empty(len(rankings), dtype=np.int64)
    for row, (ranking, truth) in enumerate(zip(rankings, ground_truths)):
        relevant = set(truth)
        if not relevant:
            raise ValueError(f"ground truth of case {row} is empty: every test case needs at least one item")
        sizes[row] = len(relevant)
        seen: set[str] = set()
        for position, item in enumerate(ranking[:depth]):
            if item in relevant and item not in seen:
                hits[row, position] = True
            seen.add(item)
    return hits, sizes


def per_case_metrics(
    rankings: Sequence[Sequence[str]],
    ground_truths: Sequence[Iterable[str]],
    k_values: Sequence[int] = DEFAULT_K_VALUES,
) -> dict[str, np.ndarray]:
    """Metric key -> float [N] per-case values (kept per case for significance tests and merging)."""
    ks = check_k_values(k_values)
    hits, sizes = hit_matrix(rankings, ground_truths, depth=ks[-1])
    discounts = 1.0 / np.log2(np.arange(2, ks[-1] + 2))
    gains = np.cumsum(hits * discounts, axis=1)  # DCG at every depth
    hit_counts = np.cumsum(hits, axis=1)
    ideal = np.cumsum(discounts)  # ideal DCG with n positives is ideal[n - 1]
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[metric_key("HR", k)] = (hit_counts[:, k - 1] > 0).astype(np.float64)
        out[metric_key("Recall", k)] = hit_counts[:, k - 1] / sizes
        out[metric_key("NDCG", k)] = gains[:, k - 1] / ideal[np.minimum(sizes, k) - 1]
    return {key: out[key] for key in metric_keys(ks)}


def ranking_metrics(
    rankings: Sequence[Sequence[str]],
    ground_truths: Sequence[Iterable[str]],
    k_values: Sequence[int] = DEFAULT_K_VALUES,
) -> dict[str, float]:
    """Metric key -> mean over cases."""
    if len(rankings) == 0:
        raise ValueError("no test cases: metrics over zero cases are undefined")
    return {key: float(values.mean()) for key, values in per_case_metrics(rankings, ground_truths, k_values).items()}


def grouped_metrics(
    rankings: Sequence[Sequence[str]],
    ground_truths: Sequence[Iterable[str]],
    groups: Sequence[str],
    k_values: Sequence[int] = DEFAULT_K_VALUES,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Per group (behavior) mean metrics and case counts, groups in first-seen order."""
    if not len(rankings) == len(ground_truths) == len(groups):
        raise ValueError(
            f"{len(rankings)} rankings, {len(ground_truths)} ground truths and {len(groups)} group labels: "
            "they must align"
        )
    return group_means(per_case_metrics(rankings, ground_truths, k_values), groups)


def group_means(
    per_case: Mapping[str, np.ndarray], groups: Sequence[str], mask: np.ndarray | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Per group mean of every per-case metric and the group's case count, over the cases `mask` keeps.

    Groups appear in first-seen order; a group with no kept case is left out.
    """
    keep = np.ones(len(groups), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != (len(groups),):
        raise ValueError(f"mask of shape {keep.shape} does not match {len(groups)} cases")
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        if keep[index]:
            members.setdefault(group, []).append(index)
    metrics = {
        group: {key: float(values[rows].mean()) for key, values in per_case.items()} for group, rows in members.items()
    }
    return metrics, {group: len(rows) for group, rows in members.items()}


def merge_metrics(
    per_behavior: Mapping[str, Mapping[str, float]], num_cases: Mapping[str, int]
) -> dict[str, float]:
    """'merged' metrics: the average over behaviors weighted by each behavior's number of test cases."""
    missing = sorted(set(per_behavior) - set(num_cases))
    if missing:
        raise ValueError(f"no case count for behaviors {missing}; counts given for {sorted(num_cases)}")
    total = sum(num_cases[b] for b in per_behavior)
    if total <= 0:
        raise ValueError(f"cannot merge: behaviors {sorted(per_behavior)} have no test cases")
    keys = list(next(iter(per_behavior.values())))
    for behavior, metrics in per_behavior.items():
        if list(metrics) != keys:
            raise ValueError(f"behavior {behavior!r} has metrics {list(metrics)}, expected {keys}")
    return {key: sum(per_behavior[b][key] * num_cases[b] for b in per_behavior) / total for key in keys}
