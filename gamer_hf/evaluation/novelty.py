"""How much of a ranked list is the user's own history, and lists without it.

On the explore slice (no target in the prompt) every history item a model ranks is a wasted slot, so
`history_share` tells whether a model is weak there because it prefers what the user already touched.
`WithoutHistory` gives any recommender the history-excluded lists GAMER decodes with
`exclude_history=True`, so the explore comparison can be made on equal terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .cases import EvalCase
from .evaluator import Recommender

__all__ = ["WithoutHistory", "history_share"]


def history_share(rankings: Sequence[Sequence[str]], cases: Sequence[EvalCase], k: int = 10) -> np.ndarray:
    """Per case: the share of the top-k slots (k, also when a list is shorter) holding the case's history items."""
    if len(rankings) != len(cases):
        raise ValueError(f"{len(rankings)} rankings for {len(cases)} cases")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.array([sum(item in set(case.history_items) for item in ranking[:k]) / k
                     for ranking, case in zip(rankings, cases)], dtype=float)


class WithoutHistory:
    """A recommender's lists with the user's history items removed: it asks for top_k plus the number of
    distinct history items of the batch, so every list is still top_k long when the catalogue allows."""

    def __init__(self, recommender: Recommender) -> None:
        if not isinstance(recommender, Recommender):
            raise TypeError(f"{type(recommender).__name__} has no recommend(cases, top_k) method")
        self.recommender = recommender

    def recommend(self, cases: list[EvalCase], top_k: int) -> list[list[str]]:
        extra = max((len(set(case.history_items)) for case in cases), default=0)
        ranked = self.recommender.recommend(cases, top_k + extra)
        return [[item for item in row if item not in set(case.history_items)][:top_k]
                for row, case in zip(ranked, cases)]
