"""Full-catalogue evaluation of GAMER and rule baselines: HR/Recall/NDCG@K per behavior, target and merged.

A checkpoint with its baselines and rerankers in one call (what `gamer-hf evaluate` runs)::

    report = evaluate_checkpoint(EvaluateArguments(model="runs/shop/gamer", data="runs/shop/prepared"))

The same rows for any trained checkpoint (what the quality benchmark runs per model)::

    popular = MostPopular().fit(prepared.splits["train"])
    rows = gamer_rows(evaluator, GamerRecommender(model, tokenizer), validation=validation_cases, popular=popular)
    rows |= rule_rows(evaluator, popular, validation_cases)   # name -> Scored(result, details)

The parts::

    evaluator = Evaluator(test_cases, behaviors={"click": 1, "cart": 2, "buy": 3})
    report = evaluator.evaluate_all({
        "GAMER": GamerRecommender(model, tokenizer, num_beams=20),
        "MostPopular": MostPopular().fit(train_events),
        "Repeat": Repeat(),
    })
    report.save_json("eval.json"); report.save_markdown("eval.md"); plot_per_behavior(report, "ndcg.png")
"""

from .bootstrap import Difference, paired_bootstrap, seed_pooled_bootstrap
from .baselines import MostPopular, Repeat, behavior_item_pairs, recent_distinct_items
from .cases import CASE_COLUMNS, EvalCase, as_cases, ordered_behaviors, target_behavior
from .evaluator import Evaluator, Recommender
from .gamer_recommender import GamerRecommender
from .hf_metric import RANKING_METRIC_PATH, load_ranking_metric
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
from .mixing import MIXER_GRID, HistoryMixer, choose_mixer
from .novelty import WithoutHistory, history_share
from .reranking import (
    CASE_FEATURES,
    EXPLORE_FEATURES,
    GATE_GRID,
    HISTORY_FEATURES,
    MODEL_FEATURES,
    REGULARIZATION_GRID,
    RESIDUAL_ITEMS,
    HistoryReranker,
)
from .plotting import plot_per_behavior
from .results import ALL_CASES, EvaluationReport, ModelResult, seed_pooled_differences
from .slices import COLD, EXPLORE, REPEAT, SLICES, case_slice, items_seen, slice_labels, slice_mask
from .protocol import (
    EVAL_FILES,
    NEW_ITEMS,
    NO_HISTORY,
    PLAIN_BEAMS,
    RULES,
    EvaluateArguments,
    Scored,
    decode_beams,
    evaluate_checkpoint,
    gamer_rows,
    rule_rows,
    subset_cases,
)
from .user_sample import distinct_items, sample_users

__all__ = [
    "ALL_CASES",
    "COLD",
    "Difference",
    "EXPLORE",
    "REPEAT",
    "SLICES",
    "case_slice",
    "distinct_items",
    "items_seen",
    "paired_bootstrap",
    "seed_pooled_bootstrap",
    "seed_pooled_differences",
    "slice_labels",
    "sample_users",
    "slice_mask",
    "CASE_COLUMNS",
    "DEFAULT_K_VALUES",
    "MERGED",
    "MIXER_GRID",
    "MODEL_FEATURES",
    "METRIC_NAMES",
    "RANKING_METRIC_PATH",
    "EVAL_FILES",
    "EXPLORE_FEATURES",
    "NEW_ITEMS",
    "NO_HISTORY",
    "PLAIN_BEAMS",
    "WithoutHistory",
    "history_share",
    "EvalCase",
    "EvaluateArguments",
    "EvaluationReport",
    "Evaluator",
    "GamerRecommender",
    "HISTORY_FEATURES",
    "HistoryMixer",
    "HistoryReranker",
    "REGULARIZATION_GRID",
    "RESIDUAL_ITEMS",
    "CASE_FEATURES",
    "GATE_GRID",
    "ModelResult",
    "MostPopular",
    "Recommender",
    "Repeat",
    "RULES",
    "Scored",
    "as_cases",
    "behavior_item_pairs",
    "check_k_values",
    "choose_mixer",
    "decode_beams",
    "evaluate_checkpoint",
    "gamer_rows",
    "grouped_metrics",
    "hit_matrix",
    "load_ranking_metric",
    "merge_metrics",
    "metric_key",
    "metric_keys",
    "ordered_behaviors",
    "per_case_metrics",
    "plot_per_behavior",
    "ranking_metrics",
    "rule_rows",
    "subset_cases",
    "recent_distinct_items",
    "target_behavior",
]
