"""GAMER behind the recommender contract, so the model is scored by the same path as the baselines.

Ranking comes from the model's fast constrained `recommend()` (prefill once, beam search over the
item trie), which covers the whole catalogue: this is full-catalogue evaluation, no sampled negatives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .cases import EvalCase, as_cases
from .mixing import HistoryMixer
from .reranking import HistoryReranker

__all__ = ["GamerRecommender"]


class GamerRecommender:
    """Adapter: `recommend(cases, top_k) -> list[list[str]]` over `model.recommend(tokenizer, histories, ...)`.

    `exclude_history` asks the model to drop history items; `mixer` blends them back in afterwards
    (see `HistoryMixer`), or a fitted `reranker` ranks beams, history and popular items together
    (see `HistoryReranker`; it sees all `num_beams` beams, and as many decoded with the history excluded
    when it uses GAMER's explore candidates). `on_unknown` goes to the tokenizer:
    "skip" drops history interactions whose item or behavior it does not know (items first seen
    after the semantic IDs were built), "raise" fails.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        num_beams: int = 20,
        max_history: int | None = None,
        exclude_history: bool = False,
        mixer: HistoryMixer | None = None,
        on_unknown: Literal["raise", "skip"] = "raise",
        reranker: HistoryReranker | None = None,
    ) -> None:
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        if mixer is not None and reranker is not None:
            raise ValueError("give a mixer or a reranker, not both")
        self.model = model
        self.tokenizer = tokenizer
        self.num_beams = num_beams
        self.max_history = max_history
        self.exclude_history = exclude_history
        self.mixer = mixer
        self.on_unknown = on_unknown
        self.reranker = reranker

    def generate(self, cases: Iterable[Mapping[str, Any] | EvalCase], top_k: int,
                 exclude_history: bool | None = None) -> list[list[tuple[str, float]]]:
        """The model's scored lists, (item id, summed log-prob) best first, one per case; `exclude_history`
        overrides the recommender's setting (True: GAMER's explore candidates, none of them a history item)."""
        cases = as_cases(cases)
        if not cases:
            return []
        requested = [case.target_behavior for case in cases]
        behavior: str | list[str] = requested[0] if len(set(requested)) == 1 else requested
        return self.model.recommend(
            self.tokenizer,
            [case.history for case in cases],
            behavior=behavior,
            top_k=top_k,
            num_beams=self.num_beams,
            max_history=self.max_history,
            exclude_history=self.exclude_history if exclude_history is None else exclude_history,
            on_unknown=self.on_unknown,
        )

    def explore_beams(self, cases: Iterable[Mapping[str, Any] | EvalCase], reranker: HistoryReranker,
                      explored: list[list[tuple[str, float]]] | None) -> list[list[tuple[str, float]]] | None:
        """The beams decoded with the history excluded when `reranker` uses them (`explored` when given)."""
        if not reranker.explore or explored is not None:
            return explored
        return self.generate(cases, self.num_beams, exclude_history=True)

    def pool_scores(self, cases: Iterable[Mapping[str, Any] | EvalCase], generated: list[list[tuple[str, float]]],
                    reranker: HistoryReranker,
                    explored: list[list[tuple[str, float]]] | None = None) -> list[dict[str, float]]:
        """GAMER's log-probability of every item in each case's reranking pool: the beam score where beam search
        (plain or, in `explored`, with the history excluded) found the item, teacher-forced otherwise (-inf for
        items the tokenizer does not know)."""
        cases = as_cases(cases)
        found = [dict(row) | dict(new) for row, new in zip(generated, explored or [[]] * len(generated))]
        pools = [reranker.pool(case, row, new) for case, row, new in
                 zip(cases, beam_items(generated), beam_items(explored) or [[]] * len(generated))]
        missing = [[item for item in pool if item not in known] for pool, known in zip(pools, found)]
        scored = self.model.score_items(
            self.tokenizer, [case.history for case in cases], missing, behavior=[case.target_behavior for case in cases],
            max_history=self.max_history, on_unknown="skip",
        )
        return [row | dict(zip(items, scores)) for row, items, scores in zip(found, missing, scored)]

    def fit_reranker(self, cases: Iterable[Mapping[str, Any] | EvalCase], reranker: HistoryReranker,
                     generated: list[list[tuple[str, float]]] | None = None,
                     explored: list[list[tuple[str, float]]] | None = None) -> GamerRecommender:
        """Fit `reranker` on held-out cases (validation, never test) with this model's beams and scores; `recommend`
        ranks with it from then on. `generated` / `explored`: the cases' `num_beams` beams (plain / with the history
        excluded) when already decoded."""
        if self.mixer is not None:
            raise ValueError("this recommender has a mixer: give a mixer or a reranker, not both")
        cases = as_cases(cases)
        generated = self.generate(cases, self.num_beams) if generated is None else generated
        explored = self.explore_beams(cases, reranker, explored)
        reranker.fit(cases, beam_items(generated), self.pool_scores(cases, generated, reranker, explored),
                     beam_items(explored))
        self.reranker = reranker
        return self

    def rerank(self, cases: Iterable[Mapping[str, Any] | EvalCase], generated: list[list[tuple[str, float]]],
               top_k: int, explored: list[list[tuple[str, float]]] | None = None) -> list[list[str]]:
        """The fitted reranker's top_k per case, from beams already decoded (all `num_beams` of them; the explore
        beams are decoded here when the reranker uses them and `explored` is not given)."""
        if self.reranker is None:
            raise RuntimeError("no reranker: call fit_reranker(validation_cases, reranker) first")
        cases = as_cases(cases)
        explored = self.explore_beams(cases, self.reranker, explored)
        return self.reranker.rank(cases, top_k, beam_items(generated),
                                  self.pool_scores(cases, generated, self.reranker, explored), beam_items(explored))

    def recommend(self, cases: Iterable[Mapping[str, Any] | EvalCase], top_k: int) -> list[list[str]]:
        """Item ids best first, history-mixed when a mixer is set, reranked when a reranker is."""
        cases = as_cases(cases)
        if self.reranker is not None:
            return self.rerank(cases, self.generate(cases, self.num_beams), top_k)
        generated = self.generate(cases, top_k)
        if self.mixer is None:
            return [[item for item, _ in scored] for scored in generated]
        return [self.mixer.mix(scored, case, top_k) for scored, case in zip(generated, cases)]


def beam_items(beams: list[list[tuple[str, float]]] | None) -> list[list[str]] | None:
    """The item ids of scored beams (None stays None)."""
    return None if beams is None else [[item for item, _ in row] for row in beams]
