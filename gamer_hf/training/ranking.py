"""Select and early-stop GAMER by validation NDCG@10 of `recommend()`, not by validation loss.

The validation loss averages the cross-entropy of every held-out target, and cold targets (items the
model never saw in training) keep raising it while the ranking of the rest still improves: the
lowest-loss epoch is often not the best-ranking one. `RankingSelectionCallback` decodes a fixed,
seeded subset of the validation cases with constrained beam search after every evaluation and adds
`eval_ndcg10` (all behaviors, case-weighted) to the Trainer's metrics before the Trainer picks the
best checkpoint and `EarlyStoppingCallback` counts patience, so both use it when
`metric_for_best_model="eval_ndcg10"`. Every process decodes the same cases, so all agree on it.
`exclude_history=True` decodes them without the users' history items, for a model that is used that way (one
trained with `score_repeats=False` for the explore slice): its epoch is then chosen for how it is used.
Each logged row also counts the cases and the repeat cases among them (a target in the prompt): the subset is
drawn by the training seed, and what it rewards depends on that share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback

from gamer_hf.evaluation import REPEAT, Evaluator, GamerRecommender, slice_mask

__all__ = ["RANKING_METRIC", "RankingSelectionCallback"]

RANKING_METRIC = "eval_ndcg10"


class RankingSelectionCallback(TrainerCallback):
    """After each evaluation, add `eval_ndcg10` of `recommend()` on fixed validation cases to the metrics.

    Must come before `EarlyStoppingCallback` in the callback list (it reads the metric we add).
    """

    def __init__(
        self,
        cases: Any,
        behaviors: Mapping[str, int],
        *,
        num_beams: int = 20,
        max_history: int | None = None,
        batch_size: int = 64,
        exclude_history: bool = False,
    ) -> None:
        self.evaluator = Evaluator(cases, behaviors, k_values=(10,), batch_size=batch_size, progress=False)
        if num_beams < self.evaluator.top_k:
            raise ValueError(f"ranking selection needs num_beams >= 10 to fill top-10 lists, got {num_beams}")
        self.num_beams, self.max_history, self.exclude_history = num_beams, max_history, exclude_history
        self.counts = {"ranking_cases": len(self.evaluator.cases),
                       "ranking_repeat_cases": int(slice_mask(self.evaluator.case_slices, REPEAT).sum())}

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        if metrics is None or model is None or processing_class is None:
            raise ValueError("RankingSelectionCallback needs the Trainer's model, processing_class and metrics")
        was_training = model.training
        model.eval()
        try:
            recommender = GamerRecommender(model, processing_class, num_beams=self.num_beams,
                                           max_history=self.max_history, on_unknown="skip",
                                           exclude_history=self.exclude_history)  # fmt: skip
            result = self.evaluator.evaluate(recommender, "validation")
        finally:
            model.train(was_training)
        metrics[RANKING_METRIC] = result.merged["NDCG@10"]
        state.log_history.append({RANKING_METRIC: metrics[RANKING_METRIC], **self.counts, "epoch": state.epoch,
                                  "step": state.global_step})  # fmt: skip
        return control
