"""Blend the user's own recent items into GAMER's generated list.

In session-wise e-commerce logs users come back to what they viewed or carted, so the repeat rule is
strong; whether GAMER's list gains from history items is measured, not assumed (DESIGN.md section 7).
Two blends, one parameter each:

- `repeat_slots=n`: the n most recent distinct history items take the first n slots, generated items
  (minus those) fill the rest. Simple, and independent of score calibration.
- `alpha=a`: a mixture of two distributions over items, a * P_repeat + (1 - a) * P_model, where
  P_model is the softmax of the generated sequence log-probabilities over the returned beams and
  P_repeat puts weight proportional to 1 / (recency rank + 1) on the distinct history items.
  a = 0 keeps the generated order (history-only items go last), a = 1 puts the repeat list first.
  Ties keep the generated order, then recency.

`choose_mixer` picks one of a grid (`MIXER_GRID` by default) by NDCG@10 on validation cases, so the
blend's one parameter is never chosen on the cases it is scored on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .baselines import recent_distinct_items
from .cases import EvalCase

if TYPE_CHECKING:
    from .evaluator import Evaluator

__all__ = ["MIXER_GRID", "HistoryMixer", "choose_mixer"]


@dataclass(frozen=True)
class HistoryMixer:
    """Mix a case's recent distinct history items into a scored generated ranking; set exactly one of
    `repeat_slots` or `alpha`. `behaviors` limits the history items used to those behaviors."""

    repeat_slots: int | None = None
    alpha: float | None = None
    behaviors: Collection[str] | None = None

    def __post_init__(self) -> None:
        if (self.repeat_slots is None) == (self.alpha is None):
            raise ValueError(
                f"HistoryMixer needs exactly one of repeat_slots or alpha, got repeat_slots={self.repeat_slots}, "
                f"alpha={self.alpha}"
            )
        if self.repeat_slots is not None and self.repeat_slots < 0:
            raise ValueError(f"repeat_slots must be >= 0, got {self.repeat_slots}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    def mix(self, generated: Sequence[tuple[str, float]], case: EvalCase, top_k: int) -> list[str]:
        """Top_k item ids from `generated` ((item, log-prob score), best first) and the case's history."""
        if self.repeat_slots is not None:
            repeat = recent_distinct_items(case, self.behaviors, limit=min(self.repeat_slots, top_k))
            taken = set(repeat)
            return (repeat + [item for item, _ in generated if item not in taken])[:top_k]
        return self._score_merge(generated, recent_distinct_items(case, self.behaviors), top_k)

    def _score_merge(self, generated: Sequence[tuple[str, float]], repeat: list[str], top_k: int) -> list[str]:
        alpha = float(self.alpha)  # set: checked in __post_init__
        candidates = list(dict.fromkeys([item for item, _ in generated] + repeat))
        index = {item: i for i, item in enumerate(candidates)}
        score = np.zeros(len(candidates))
        if generated:
            logp = np.array([s for _, s in generated], dtype=np.float64)
            p_model = np.exp(logp - logp.max())
            for (item, _), p in zip(generated, p_model / p_model.sum()):
                score[index[item]] += (1.0 - alpha) * p
        if repeat:
            p_repeat = 1.0 / np.arange(1, len(repeat) + 1)
            for item, p in zip(repeat, p_repeat / p_repeat.sum()):
                score[index[item]] += alpha * p
        order = np.argsort(-score, kind="stable")
        return [candidates[i] for i in order[:top_k]]


# alpha=1 is "the repeat list first, GAMER fills the rest" (repeat_slots=K is the same list at K).
MIXER_GRID: tuple[HistoryMixer, ...] = (*(HistoryMixer(repeat_slots=n) for n in (1, 2, 3, 5)),
                                        *(HistoryMixer(alpha=a) for a in (0.25, 0.5, 0.75, 1.0)))


def choose_mixer(
    evaluator: Evaluator, generated: Sequence[Sequence[tuple[str, float]]], mixers: Sequence[HistoryMixer] = MIXER_GRID
) -> tuple[HistoryMixer, float, list[tuple[HistoryMixer, float]]]:
    """The mixer of `mixers` with the best target-behavior NDCG@10 (merged when no case has the target behavior)
    on the evaluator's cases (validation: never the scored split), that score, and every candidate's score.
    `generated`: the model's scored beams for those cases; ties go to the earlier mixer."""
    if not mixers:
        raise ValueError("choose_mixer needs at least one candidate mixer")
    scores = []
    for mixer in mixers:
        mixed = [mixer.mix(row, case, evaluator.top_k) for row, case in zip(generated, evaluator.cases)]
        result = evaluator.score(mixed, "mix")
        rows = result.target if result.target_behavior in result.metrics else result.merged
        scores.append((mixer, rows[f"NDCG@{evaluator.headline_k}"]))
    best, score = max(scores, key=lambda pair: pair[1])
    return best, score, scores
