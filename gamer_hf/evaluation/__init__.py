"""Full-catalogue evaluation of GAMER and rule baselines: HR/Recall/NDCG@K per behavior, target and merged."""

from .cases import CASE_COLUMNS, EvalCase, as_cases, ordered_behaviors, target_behavior
from .metrics import (
    DEFAULT_K_VALUES,
    MERGED,
    METRIC_NAMES,
    check_k_values,
    grouped_metrics,
    hit_matrix,
    merge_metrics,
    metric_key,
    metric_keys,
    per_case_metrics,
    ranking_metrics,
)

__all__ = [
    "CASE_COLUMNS",
    "DEFAULT_K_VALUES",
    "MERGED",
    "METRIC_NAMES",
    "EvalCase",
    "as_cases",
    "check_k_values",
    "grouped_metrics",
    "hit_matrix",
    "merge_metrics",
    "metric_key",
    "metric_keys",
    "ordered_behaviors",
    "per_case_metrics",
    "ranking_metrics",
    "target_behavior",
]
