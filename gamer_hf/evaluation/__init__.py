"""Full-catalogue evaluation of GAMER and rule baselines: HR/Recall/NDCG@K per behavior, target and merged."""

from .baselines import MostPopular, Repeat, behavior_item_pairs, recent_distinct_items
from .cases import CASE_COLUMNS, EvalCase, as_cases, ordered_behaviors, target_behavior
from .evaluator import Evaluator, Recommender
from .gamer_recommender import GamerRecommender
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
from .mixing import HistoryMixer
from .results import EvaluationReport, ModelResult

__all__ = [
    "CASE_COLUMNS",
    "DEFAULT_K_VALUES",
    "MERGED",
    "METRIC_NAMES",
    "EvalCase",
    "EvaluationReport",
    "Evaluator",
    "GamerRecommender",
    "HistoryMixer",
    "ModelResult",
    "MostPopular",
    "Recommender",
    "Repeat",
    "as_cases",
    "behavior_item_pairs",
    "check_k_values",
    "grouped_metrics",
    "hit_matrix",
    "merge_metrics",
    "metric_key",
    "metric_keys",
    "ordered_behaviors",
    "per_case_metrics",
    "ranking_metrics",
    "recent_distinct_items",
    "target_behavior",
]
