"""SASRec behind the evaluation `Recommender` contract: `fit(...)` then `recommend(cases, top_k)`.

Trains on the prepared training rows ({"behaviors", "items"}, one per user and view), early-stops on
the validation cases, and ranks the whole catalogue for each test case. History items are not
excluded: the model decides whether a user comes back to an item, as GAMER does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ..evaluation.cases import EvalCase, as_cases
from .sasrec import SASRec, SASRecConfig
from .trainer import CaseBatch, FitResult, TrainingSettings, case_targets, fit, last_hidden
from .vocabulary import ItemVocabulary

__all__ = ["SASRecRecommender"]


def _training_sequences(train: Any) -> list[tuple[list[str], list[str]]]:
    """(behaviors, items) of every training row; accepts a Dataset, a dict of columns or a list of rows."""
    if isinstance(train, Mapping) or hasattr(train, "column_names"):
        columns = train.column_names if hasattr(train, "column_names") else list(train)
        missing = [c for c in ("behaviors", "items") if c not in columns]
        if missing:
            raise ValueError(f"training data lacks columns {missing}; it has {sorted(columns)}")
        return [(list(b), [str(i) for i in items]) for b, items in zip(train["behaviors"], train["items"])]
    out = []
    for index, row in enumerate(train):
        if "behaviors" not in row or "items" not in row:
            raise ValueError(f"training row {index} lacks 'behaviors' or 'items' (has {sorted(row)})")
        out.append((list(row["behaviors"]), [str(i) for i in row["items"]]))
    return out


class SASRecRecommender:
    """A seeded SASRec (or behavior-aware SASRec with `use_behaviors=True`) trained and queried in one object.

    `model_options` go to `SASRecConfig` (hidden_size, num_layers, num_heads, dropout, max_length).
    """

    def __init__(self, use_behaviors: bool = False, settings: TrainingSettings | None = None,
                 **model_options: Any) -> None:
        self.use_behaviors = use_behaviors
        self.settings = settings or TrainingSettings()
        self.model_options = model_options
        self.vocabulary: ItemVocabulary | None = None
        self.model: SASRec | None = None
        self.fit_result: FitResult | None = None

    @property
    def name(self) -> str:
        return "SASRec+behavior" if self.use_behaviors else "SASRec"

    def fit(
        self,
        train: Any,
        item_ids: Sequence[str],
        behaviors: Mapping[str, int],
        validation: Iterable[Mapping[str, Any] | EvalCase] | None = None,
    ) -> SASRecRecommender:
        """Train on `train` rows over the catalogue `item_ids`; `validation` cases drive early stopping."""
        self.vocabulary = ItemVocabulary(item_ids, behaviors)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            config = SASRecConfig(num_items=self.vocabulary.num_items, num_behaviors=self.vocabulary.num_behaviors,
                                  use_behaviors=self.use_behaviors, **self.model_options)
            self.model = SASRec(config)
            sequences = self.vocabulary.encode(_training_sequences(train), config.max_length + 1)
            cases = self._case_batch(as_cases(validation)) if validation is not None else None
            self.fit_result = fit(self.model, sequences, cases, self.settings)
        return self

    @classmethod
    def fit_prepared(cls, prepared: Any, use_behaviors: bool = False, settings: TrainingSettings | None = None,
                     **model_options: Any) -> SASRecRecommender:
        """Fit on a `gamer_hf.data.PreparedData`: its train rows, catalogue, behaviors and validation cases."""
        options = {"max_length": prepared.metadata.get("max_history") or 50, **model_options}
        return cls(use_behaviors, settings, **options).fit(
            prepared.splits["train"], prepared.item_ids, prepared.metadata["behaviors"], prepared.splits["validation"]
        )

    def _case_batch(self, cases: list[EvalCase]) -> CaseBatch:
        vocabulary = self._fitted()[1]
        histories = vocabulary.encode([(c.history_behaviors, c.history_items) for c in cases],
                                      self.model.config.max_length)
        requested = torch.tensor([vocabulary.behavior(c.target_behavior) for c in cases], dtype=torch.long)
        targets = case_targets([[vocabulary.item(i) for i in c.target_items] for c in cases])
        return CaseBatch(histories, requested, targets)

    def _fitted(self) -> tuple[SASRec, ItemVocabulary]:
        if self.model is None or self.vocabulary is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(...) first")
        return self.model, self.vocabulary

    @torch.no_grad()
    def scores(self, cases: Iterable[Mapping[str, Any] | EvalCase]) -> torch.Tensor:
        """Scores [cases, catalogue rows] of every item for each case (specials are -inf)."""
        model, _ = self._fitted()
        batch = self._case_batch(as_cases(cases)).to(next(model.parameters()).device)
        model.eval()
        return model.item_logits(last_hidden(model, batch.histories, batch.requested)).cpu()

    def recommend(self, cases: Iterable[Mapping[str, Any] | EvalCase], top_k: int) -> list[list[str]]:
        """The top_k catalogue items per case, best first."""
        cases = as_cases(cases)
        if not cases:
            return []
        model, vocabulary = self._fitted()
        out: list[list[str]] = []
        for start in range(0, len(cases), self.settings.eval_batch_size):
            logits = self.scores(cases[start : start + self.settings.eval_batch_size])
            top = logits.topk(min(top_k, len(vocabulary.item_ids)), dim=-1).indices
            out.extend(vocabulary.decode(row) for row in top.tolist())
        return out
