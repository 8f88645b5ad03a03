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
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from .baselines import recent_distinct_items
from .cases import EvalCase

__all__ = ["HistoryMixer"]


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
