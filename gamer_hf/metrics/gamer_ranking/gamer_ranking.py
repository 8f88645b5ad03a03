"""GAMER ranking metrics (HR@K, Recall@K, NDCG@K over ground-truth item sets) as an `evaluate` module.

evaluate copies this script into its module cache before importing it, so relative imports cannot
reach the package: it imports the metric functions from the installed `gamer_hf` (the same code the
Evaluator uses, so both give identical numbers). Load it offline by folder path::

    metric = evaluate.load("path/to/gamer_hf/metrics/gamer_ranking")   # or gamer_hf.evaluation.load_ranking_metric()
    metric.compute(predictions=[["a", "b"]], references=[["b"]], k_values=[1, 5, 10])
"""

from collections.abc import Sequence

import datasets
import evaluate

from gamer_hf.evaluation.metrics import (  # From: gamer-hf
    DEFAULT_K_VALUES,
    MERGED,
    grouped_metrics,
    merge_metrics,
    ranking_metrics,
)

_DESCRIPTION = """HR@K (any ground-truth item in the top K), Recall@K (|hits in top K| / |G|) and NDCG@K
(binary gains, normalized by the ideal DCG over min(K, |G|) positives) for ranked lists of item ids
against ground-truth item sets. An item repeated in a ranking earns its gain only once."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one ranked list of item ids (str, best first) per test case.
    references: one list of ground-truth item ids per test case (treated as a set; must be non-empty).
    k_values: cut-offs, default (1, 5, 10).
    behaviors: optional, the requested behavior of each test case; adds "<behavior>/<metric>" per
        behavior and "merged/<metric>" (average over behaviors weighted by their number of cases).
Returns:
    dict metric key ("HR@10", "Recall@10", "NDCG@10", ...) -> mean over test cases.
Examples:
    >>> metric = evaluate.load("gamer_hf/metrics/gamer_ranking")
    >>> metric.compute(predictions=[["a", "b"]], references=[["b"]], k_values=[1, 2])["NDCG@2"]
    0.6309297535714575
"""

_CITATION = """@article{wang2025gamer,
  title={Generative Sequential Recommendation via Hierarchical Behavior Modeling},
  author={Wang and others},
  journal={arXiv preprint arXiv:2511.03155},
  year={2025}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GamerRanking(evaluate.Metric):
    """Full-catalogue top-K ranking metrics over item-id lists."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(
        self,
        predictions: Sequence[Sequence[str]],
        references: Sequence[Sequence[str]],
        k_values: Sequence[int] = DEFAULT_K_VALUES,
        behaviors: Sequence[str] | None = None,
    ) -> dict[str, float]:
        overall = ranking_metrics(predictions, references, k_values)
        if behaviors is None:
            return overall
        per_behavior, counts = grouped_metrics(predictions, references, behaviors, k_values)
        per_behavior[MERGED] = merge_metrics(per_behavior, counts)
        out = dict(overall)
        for behavior, metrics in per_behavior.items():
            out.update({f"{behavior}/{key}": value for key, value in metrics.items()})
        return out
