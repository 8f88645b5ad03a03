"""Learn when users return to an item, instead of fixing a blend of history and model by hand.

On session-wise e-commerce logs most targets are items the user already touched, so the question is
less "which new item" than "which of my items, and when something new". `HistoryReranker` pools the
user's distinct history items, the requested behavior's most popular items and (when given) GAMER's
beams, plain and decoded with the history excluded (its explore candidates), describes every pooled item by how the user met it (recency, count, behavior levels), how
popular it is and how GAMER scores it (log-probability of its semantic ID, beam ranks), and ranks the
pool by a logistic regression fit on validation cases (label: the item is a target). Given a grid of
regularization strengths, the fit picks one by K-fold cross-validation over those cases (NDCG@10 of the
held-out folds), so a pool with many features is not overfit to a few hundred cases.

One linear score cannot rank GAMER's new items high where the user explores and low where the user returns,
so the reranker can also be *gated*: `CASE_FEATURES` describe the case, not the candidate (how much of GAMER's
beam mass sits on history items, how repetitive the history is, its length, the requested behavior), and every
candidate feature also enters multiplied by each of them, a linear model whose weights move with the case.
Whether to gate is chosen by the same cross-validation as the regularization (`gate=GATE_GRID`).

Without model scores it is a learned repeat rule, the baseline that tells how much GAMER adds. With
`residual=True`, a GAMER reranker is fit on top of that rule: the rule (fit on the same cases, its own settings
cross-validated) gives every pooled item its logit out of fold, and that logit enters the fit as a fixed offset
(coefficient 1, the textbook residual), so the reranker's own columns, all shrunk, can only add to the rule's
score: strong shrinkage gives the rule back instead of something worse, and "the rule alone" is one of the settings
cross-validation chooses from. So are fits of GAMER's model and explore columns alone (`model only`),
the history features left to the rule: with them GAMER's gated history columns cannot re-learn the rule in its place.
With `residual_items="new"` the residual's columns score only the items GAMER brings that the rule's own pool
(history and popular items) lacks: the rule's items keep the rule's logit and so its order, and each new item gets
its own fitted log-odds (intercept included), compared with the rule's on one scale. GAMER then changes a list only
by inserting new items, the rule's logit is never applied to items it was not fit on, and "the rule alone" (the new
items last) is exactly the rule's list.

The fit is scikit-learn's L2 logistic regression (standardized columns, unpenalized intercept) solved exactly by
Newton's method, each fold's rows standardized once and each fit started from the previous C's optimum. The
fitted weights are plain numbers (`to_dict` / `from_dict`, JSON), never a pickle.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..files import atomic_output, read_json
from .baselines import MostPopular, recent_distinct_items
from .cases import EvalCase, as_cases
from .metrics import per_case_metrics

__all__ = ["HistoryReranker", "HISTORY_FEATURES", "MODEL_FEATURES", "EXPLORE_FEATURES", "CASE_FEATURES",
           "GATE_GRID", "REGULARIZATION_GRID", "RESIDUAL_ITEMS"]

HISTORY_FEATURES: tuple[str, ...] = (
    "in_history",  # the user touched the item before
    "recency",  # 1 / (1 + rank among distinct history items, most recent first)
    "log_count",  # log(1 + interactions with the item)
    "last_level",  # behavior level of the latest interaction, scaled to [0, 1]
    "max_level",  # highest behavior level the user reached on it
    "under_requested",  # the user already did the requested behavior on it
    "log_popularity",  # log(1 + training interactions under the requested behavior)
    "log_popularity_all",  # log(1 + training interactions, any behavior)
)
MODEL_FEATURES: tuple[str, ...] = (
    "in_beams",  # found by GAMER's beam search
    "beam_reciprocal_rank",  # 1 / (1 + beam rank), 0 outside the beams
    "model_logp",  # GAMER's log-probability minus the best one in the pool, clipped at -30
    "model_share",  # softmax of GAMER's log-probabilities over the pool
)
# With GAMER's explore beams (`explore=True`): the plain beams are mostly history items, so on a case whose target
# is new most of GAMER's candidates would otherwise be the ones the rule already has.
EXPLORE_FEATURES: tuple[str, ...] = (
    "in_explore_beams",  # found by the beam search with the history excluded
    "explore_reciprocal_rank",  # 1 / (1 + rank among those beams), 0 outside them
    "history_model_logp",  # model_logp of history items (0 for new ones): GAMER's say on a return, apart from new items
)
# Of the case, not the candidate: what the gate multiplies every candidate feature by.
CASE_FEATURES: tuple[str, ...] = (
    "history_beam_mass",  # share of GAMER's plain-beam probability mass on history items (with the model only)
    "repeat_rate",  # 1 - distinct items / interactions of the history: how much this user returns
    "log_history_length",  # log(1 + interactions in the history)
    "target_level",  # the requested behavior's level, scaled to [0, 1]
)
# Whether the candidate features are gated by CASE_FEATURES; cross-validation chooses (ties: ungated).
GATE_GRID: tuple[bool, ...] = (False, True)
_LOGP_FLOOR = -30.0
# Inverse L2 strengths (sklearn's C) that cross-validation chooses from: from strong shrinkage to almost none.
REGULARIZATION_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
_CV_K = 10  # cross-validation scores NDCG@10, the headline metric
# A setting: (gated, regularization, model only). Model only: a residual fit's MODEL_FEATURES and EXPLORE_FEATURES
# (gated or not), none of the HISTORY_FEATURES, which the rule beneath already scores.
# Which pooled items a residual fit's columns score: every one, on top of the rule's logit, or only those outside the
# rule's own pool (GAMER's new items), the rule's items left at the rule's logit.
RESIDUAL_ITEMS: tuple[str, ...] = ("all", "new")
_RULE_ONLY = (False, 0.0, False)  # a residual fit's setting with none of its own columns: the rule beneath alone
_NEWTON_STEPS = 100  # a cap only: a fit converges in far fewer


class HistoryReranker:
    """Rank a pool of history, popular and (optionally) generated items with a fitted logistic regression.

    `use_model=False` ignores model scores (the learned repeat baseline). `popular_pool` popular items of the
    requested behavior join every pool, so users with few history items still get full lists. `explore` (with
    the model) also pools GAMER's beams decoded with the history excluded and describes them by `EXPLORE_FEATURES`.
    `regularization` is the inverse L2 strength, or a grid of them to choose from by `cv_folds`-fold
    cross-validation over the fit cases (e.g. `REGULARIZATION_GRID`); `gate` likewise, a flag or the flags to choose
    from (`GATE_GRID`): gated, every candidate feature is also multiplied by each of `case_feature_names`.
    `residual` (with the model) fits these columns on top of the cross-fitted model-free reranker (`self.rule`),
    whose logit is a fixed offset of the fit; `residual_items` says which pooled items those columns score: "all"
    (on top of the rule's logit) or "new" (only the items outside the rule's own pool, by their own log-odds; the
    rule's items keep the rule's logit).
    """

    def __init__(
        self,
        behaviors: Mapping[str, int],
        popular: MostPopular | None = None,
        use_model: bool = True,
        popular_pool: int = 10,
        regularization: float | Sequence[float] = 1.0,
        explore: bool = True,
        cv_folds: int = 5,
        gate: bool | Sequence[bool] = False,
        residual: bool = False,
        residual_items: str = "all",
    ) -> None:
        if not behaviors:
            raise ValueError("behaviors is empty: give the behavior table, e.g. {'click': 1, 'cart': 2, 'buy': 3}")
        grid = [regularization] if isinstance(regularization, (int, float)) else list(regularization)
        if not grid or any(value <= 0 for value in grid):
            raise ValueError(f"regularization must be > 0 (or a non-empty grid of such values), got {regularization}")
        gates = [gate] if isinstance(gate, bool) else list(dict.fromkeys(gate))
        if not gates or any(not isinstance(value, bool) for value in gates):
            raise ValueError(f"gate must be True, False or a non-empty sequence of them, got {gate!r}")
        if len(grid) * len(gates) > 1 and cv_folds < 2:
            raise ValueError(f"choosing among {len(grid) * len(gates)} settings (regularization x gate) needs "
                             f"cv_folds >= 2, got {cv_folds}")
        if residual and (not use_model or cv_folds < 2):
            raise ValueError("residual=True fits GAMER's columns on top of the cross-fitted rule: it needs "
                             f"use_model=True and cv_folds >= 2, got use_model={use_model}, cv_folds={cv_folds}")
        if residual_items not in RESIDUAL_ITEMS or (residual_items != "all" and not residual):
            raise ValueError(f"residual_items must be one of {RESIDUAL_ITEMS} ('new' with residual=True), got "
                             f"{residual_items!r} with residual={residual}")
        self.grid = sorted(float(value) for value in grid)
        self.gates = sorted(gates)  # ungated first: it wins ties
        self.cv_folds = cv_folds
        self.behaviors = dict(behaviors)
        self.popular = popular
        self.use_model = use_model
        self.popular_pool = popular_pool if popular is not None else 0
        self.explore = explore and use_model
        self.residual = residual
        self.residual_items = residual_items
        self.rule: HistoryReranker | None = None  # with `residual`: the model-free reranker beneath, fit by `fit`
        self.weights: dict[str, Any] | None = None
        self._fold_fits: list[dict[str, Any]] | None = None  # the chosen setting's fit without each CV fold
        # Column of every name in this reranker's widest rows, and a fit's feature names -> those columns: computed
        # once per reranker, not per case scored.
        self._index = {name: i for i, name in enumerate(self.gated_feature_names(True in self.gates))}
        self._selections: dict[tuple[str, ...], slice | np.ndarray] = {}
        low, high = min(self.behaviors.values()), max(self.behaviors.values())
        self._level = {name: (level - low) / (high - low) if high > low else 1.0 for name, level in self.behaviors.items()}

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The candidate features, ungated."""
        return HISTORY_FEATURES + (MODEL_FEATURES if self.use_model else ()) + (EXPLORE_FEATURES if self.explore else ())

    @property
    def case_feature_names(self) -> tuple[str, ...]:
        """What the gate multiplies the candidate features by (GAMER's beam mass only with the model)."""
        return CASE_FEATURES if self.use_model else CASE_FEATURES[1:]

    def gated_feature_names(self, gate: bool, model_only: bool = False) -> tuple[str, ...]:
        """The columns of a gated (or ungated) row: the candidate features, then each times each case feature;
        `model_only`, the model and explore features alone (a residual fit's setting that leaves history to the rule)."""
        base = tuple(n for n in self.feature_names if n not in HISTORY_FEATURES) if model_only else self.feature_names
        return base + tuple(f"{name}*{case}" for name in base for case in self.case_feature_names) if gate else base

    def _setting_features(self, gate: bool, regularization: float, model_only: bool) -> tuple[str, ...]:
        """The columns a setting fits: none for the rule alone."""
        return self.gated_feature_names(gate, model_only) if regularization > 0 else ()

    def _select(self, names: Sequence[str]) -> slice | np.ndarray:
        """Where the columns `names` (a fit's features) sit in this reranker's rows: a slice when they lead them."""
        key = tuple(names)
        if key not in self._selections:
            index = np.array([self._index[name] for name in key], dtype=np.int64)
            self._selections[key] = slice(0, len(key)) if np.array_equal(index, np.arange(len(key))) else index
        return self._selections[key]

    # ------------------------------------------------------------------------------------------ pools

    def pool(self, case: EvalCase, generated: Sequence[str] = (), explored: Sequence[str] = ()) -> list[str]:
        """Candidate items of a case: generated (best first), explored (the beams without history), then history
        (most recent first), then popular."""
        popular = self.popular.ranking(case.target_behavior, self.popular_pool) if self.popular_pool else []
        return list(dict.fromkeys([*(generated if self.use_model else ()), *(explored if self.explore else ()),
                                   *recent_distinct_items(case), *popular]))

    def features(self, case: EvalCase, pool: Sequence[str], generated: Sequence[str] = (),
                 model_scores: Mapping[str, float] | None = None, explored: Sequence[str] = ()) -> np.ndarray:
        """[len(pool), len(feature_names)] feature rows; `model_scores` maps pool items to GAMER log-probs,
        `explored` are the case's beams decoded with the history excluded."""
        stats: dict[str, list[float]] = {}  # item -> [recency rank, count, last level, max level, under requested]
        for behavior, item in zip(reversed(case.history_behaviors), reversed(case.history_items)):
            level = self._level.get(behavior, 0.0)
            if item not in stats:
                stats[item] = [len(stats), 0.0, level, level, 0.0]
            row = stats[item]
            row[1] += 1
            row[3] = max(row[3], level)
            row[4] = max(row[4], float(behavior == case.target_behavior))
        own, overall = self.popular.pool_counts(pool, case.target_behavior) if self.popular is not None else (
            np.zeros((2, len(pool)), dtype=np.int64))
        out = np.zeros((len(pool), len(self.feature_names)))
        for i, item in enumerate(pool):
            if item in stats:
                rank, count, last, top, requested = stats[item]
                out[i, :6] = (1.0, 1.0 / (1.0 + rank), math.log1p(count), last, top, requested)
            out[i, 6:8] = (math.log1p(own[i]), math.log1p(overall[i]))
        if self.use_model:
            if model_scores is None:
                raise ValueError(f"case of user {case.user_id!r}: this reranker uses the model, give model_scores")
            missing = [item for item in pool if item not in model_scores]
            if missing:
                raise ValueError(f"case of user {case.user_id!r}: no model score for pool item {missing[0]!r}")
            logp = np.array([model_scores[item] for item in pool], dtype=np.float64)
            finite = np.isfinite(logp)  # -inf: an item the tokenizer does not know, which GAMER cannot generate
            logp = np.maximum(logp - (logp[finite].max() if finite.any() else 0.0), _LOGP_FLOOR)
            share = np.exp(logp) / np.exp(logp).sum() if len(pool) else logp
            rank = {item: r for r, item in enumerate(generated)}
            for i, item in enumerate(pool):
                out[i, 8:12] = (float(item in rank), 1.0 / (1.0 + rank[item]) if item in rank else 0.0, logp[i], share[i])
        if self.explore:
            rank = {item: r for r, item in enumerate(explored)}
            for i, item in enumerate(pool):
                out[i, 12:] = (float(item in rank), 1.0 / (1.0 + rank[item]) if item in rank else 0.0,
                               out[i, 10] if item in stats else 0.0)
        return out

    def case_features(self, case: EvalCase, generated: Sequence[str] = (),
                      model_scores: Mapping[str, float] | None = None) -> np.ndarray:
        """The case's `case_feature_names` values; `generated` are its plain beams, scored in `model_scores`."""
        length = len(case.history_items)
        values = [1.0 - len(set(case.history_items)) / length if length else 0.0, math.log1p(length),
                  self._level.get(case.target_behavior, 0.0)]
        if self.use_model:
            logp = np.array([model_scores[item] for item in generated] if model_scores is not None and generated else [])
            logp = logp[np.isfinite(logp)] if len(logp) else logp
            mass = 0.0
            if len(logp):
                weight = np.exp(logp - logp.max())
                history = set(case.history_items)
                finite = [item for item in generated if np.isfinite(model_scores[item])]
                mass = float(weight[[item in history for item in finite]].sum() / weight.sum())
            values.insert(0, mass)
        return np.array(values)

    def _rows(self, cases: list[EvalCase], generated: Sequence[Sequence[str]] | None,
              model_scores: Sequence[Mapping[str, float]] | None,
              explored: Sequence[Sequence[str]] | None) -> list[tuple[list[str], np.ndarray]]:
        if self.use_model and (generated is None or model_scores is None):
            raise ValueError("this reranker uses the model: give generated lists and model_scores for every case")
        if self.explore and explored is None:
            raise ValueError("this reranker uses GAMER's explore beams: give explored lists (decoded with the history "
                             "excluded) for every case, or build it with explore=False")
        for name, given in (("generated", generated), ("model_scores", model_scores), ("explored", explored)):
            if given is not None and len(given) != len(cases):
                raise ValueError(f"{name} has {len(given)} entries for {len(cases)} cases")
        rows = []
        for index, case in enumerate(cases):
            beams = list(generated[index]) if generated is not None else []
            new = list(explored[index]) if explored is not None else []
            pool = self.pool(case, beams, new)
            scores = model_scores[index] if model_scores is not None else None
            features = self.features(case, pool, beams, scores, new)
            if True in self.gates:  # ungated fits read the first columns only
                gate = self.case_features(case, beams, scores)
                features = np.hstack([features, (features[:, :, None] * gate).reshape(len(pool), -1)])
            rows.append((pool, features))
        return rows

    # --------------------------------------------------------------------------------- fit and rank

    def fit(self, cases: Sequence[Mapping[str, Any] | EvalCase], generated: Sequence[Sequence[str]] | None = None,
            model_scores: Sequence[Mapping[str, float]] | None = None,
            explored: Sequence[Sequence[str]] | None = None) -> HistoryReranker:
        """Fit on held-out cases (validation, never test): every pool item is a row, targets are positives; with a
        regularization grid (and/or both gate flags), the setting with the best cross-validated NDCG@10 is refit on
        every case."""
        cases = as_cases(cases)
        if not cases:
            raise DataError("cannot fit a reranker on 0 cases: give it held-out cases (validation) with targets")
        rows = self._rows(cases, generated, model_scores, explored)
        labels = _labels(cases, rows)
        y = np.concatenate(labels)
        if not y.any() or y.all():
            raise DataError(f"cannot fit a reranker on {len(cases)} cases: {int(y.sum())} of {len(y)} pooled items are "
                             "targets; the fit needs both targets and non-targets in the pools")
        settings = [(gate, value, False) for gate in self.gates for value in self.grid]
        if self.residual:  # the rule alone first (it wins ties), the model columns alone last
            settings = [_RULE_ONLY, *settings, *((gate, value, True) for gate in self.gates for value in self.grid)]
        offsets = self._fit_rule(cases, rows) if self.residual else None
        new = self._new_items(cases, rows)
        if new is not None and not any(label[mask].any() for label, mask in zip(labels, new)):
            settings = [_RULE_ONLY]  # none of GAMER's new items is a target: nothing to fit but the rule alone
        cv, fits = self._cross_validate(cases, rows, labels, settings, offsets, new) if len(settings) > 1 else (
            None, None)
        # Ties: the first setting, i.e. the rule alone (residual), then ungated, then the strongest regularization,
        # then all the columns before the model's alone.
        setting = max(cv, key=cv.get) if cv else settings[0]
        gate, chosen, model_only = setting
        self._fold_fits = fits[setting] if fits else None  # what a residual fit on top of this one scores with
        names = self._setting_features(*setting)
        x, y, offset = _stack(rows, labels, offsets, new, range(len(cases)))
        used = x[:, self._select(names)]
        mean, scale = _standardize(used)
        design = _design(used, mean, scale)
        # No target among the rows (GAMER's new items only): the rule alone, whose intercept no list reads.
        solution = _newton(design, y, _penalty(len(names), chosen), offset=offset) if y.any() else np.zeros(1)
        self.weights = _weights(solution, mean, scale) | {
            "features": list(names), "gate": gate, "regularization": chosen, "model_only": model_only,
            "fit_cases": len(cases), "fit_rows": int(len(y)), "fit_positives": int(y.sum())}
        if cv:
            self.weights["cv_ndcg10"] = {_setting_key(*setting): score for setting, score in cv.items()}
        return self

    def _folds(self, cases: int) -> np.ndarray:
        """The cross-validation fold of every case: a seeded split, the same for every setting and the rule."""
        if cases < self.cv_folds:
            raise DataError(f"cannot cross-validate {self.cv_folds} folds on {cases} cases: give more "
                            "validation cases or one regularization value")
        fold = np.empty(cases, dtype=np.int64)
        fold[np.random.default_rng(0).permutation(cases)] = np.arange(cases) % self.cv_folds
        return fold

    def _cross_validate(self, cases: list[EvalCase], rows: list[tuple[list[str], np.ndarray]],
                        labels: list[np.ndarray], settings: list[tuple[bool, float, bool]],
                        offsets: list[np.ndarray] | None = None, new: list[np.ndarray] | None = None,
                        ) -> tuple[dict[tuple[bool, float, bool], float],
                                   dict[tuple[bool, float, bool], list[dict[str, Any]]]]:
        """(gate, regularization, model only) -> NDCG@10 of the held-out folds' cases, and the weights fit without
        each fold.

        Each fold's rows are standardized once (a setting reads its columns of them, and a column's mean and scale do
        not depend on the others), and each fit starts from a nearby optimum: the same setting's in the previous
        fold, else the previous (stronger) regularization's on the same columns in this fold."""
        fold = self._folds(len(cases))
        width = max((self._index[n] + 1 for s in settings for n in self._setting_features(*s)), default=0)
        ndcg = {setting: np.zeros(len(cases)) for setting in settings}
        fits: dict[tuple[bool, float, bool], list[dict[str, Any]]] = {setting: [] for setting in settings}
        previous: dict[tuple[bool, float, bool], np.ndarray] = {}  # setting -> its optimum in the previous fold
        for held in range(self.cv_folds):
            inside, outside = np.flatnonzero(fold != held), np.flatnonzero(fold == held)
            x, y, offset = _stack(rows, labels, offsets, new, inside, width)
            if new is not None and not y.any():  # no new item is a target without this fold: its fits are the rule
                self._score_rule_alone(cases, rows, outside, offsets, new, settings, ndcg, fits)
                continue
            if not y.any() or y.all():
                raise DataError(f"cannot cross-validate: a fold of {len(inside)} training cases has "
                                f"{int(y.sum())} targets among {len(y)} {'new ' if new else ''}pooled items")
            mean, scale = _standardize(x)
            design = _design(x, mean, scale)
            last: dict[tuple[str, ...], np.ndarray] = {}  # columns -> the last optimum on them in this fold
            for setting in settings:
                names = self._setting_features(*setting)
                select = self._select(names)
                used = design[:, :1 + len(names)] if isinstance(select, slice) else np.hstack(
                    [design[:, :1], design[:, 1 + select]])
                start = previous.get(setting, last.get(names))
                solution = previous[setting] = last[names] = _newton(used, y, _penalty(len(names), setting[1]), start,
                                                                     offset)
                weights = _weights(solution, mean[select], scale[select]) | {"features": list(names)}
                fits[setting].append(weights)
                ranked = [_order(rows[i][0], rows[i][1][:, select], weights, _CV_K,
                                 None if offsets is None else offsets[i], None if new is None else new[i])
                          for i in outside]
                ndcg[setting][outside] = per_case_metrics(ranked, [cases[i].target_items for i in outside],
                                                          (_CV_K,))[f"NDCG@{_CV_K}"]
        return {setting: float(score.mean()) for setting, score in ndcg.items()}, fits

    @staticmethod
    def _score_rule_alone(cases: list[EvalCase], rows: list[tuple[list[str], np.ndarray]], outside: np.ndarray,
                          offsets: list[np.ndarray], new: list[np.ndarray], settings: list[tuple[bool, float, bool]],
                          ndcg: dict[tuple[bool, float, bool], np.ndarray],
                          fits: dict[tuple[bool, float, bool], list[dict[str, Any]]]) -> None:
        """A fold whose training cases hold no new-item target (few of GAMER's new items are targets): a fit there
        would send every new item to the bottom, so every setting is scored as the rule alone on the held-out cases
        (the new items after the rule's), and its fold fit is the rule alone."""
        alone = {"mean": [], "scale": [], "coef": [], "intercept": 0.0, "features": []}
        ranked = [_order(rows[i][0], rows[i][1][:, :0], alone, _CV_K, offsets[i], new[i]) for i in outside]
        scores = per_case_metrics(ranked, [cases[i].target_items for i in outside], (_CV_K,))[f"NDCG@{_CV_K}"]
        for setting in settings:
            ndcg[setting][outside] = scores
            fits[setting].append(dict(alone))

    # ------------------------------------------------------------------------------ the rule beneath

    def _fit_rule(self, cases: list[EvalCase], rows: list[tuple[list[str], np.ndarray]]) -> list[np.ndarray]:
        """Fit the model-free reranker (Repeat+learned, same settings, same cases) as `self.rule`; return its
        cross-fitted logit of every pooled item (each case scored by the rule fit without the case's fold, the folds
        of `_folds`). New cases get the logit of the rule itself (`rank`), so "the rule alone" ranks exactly as
        Repeat+learned on the items of its own pool (GAMER's beams in the pool are scored by the rule's logit too)."""
        self.rule = HistoryReranker(self.behaviors, self.popular, use_model=False, popular_pool=self.popular_pool,
                                    regularization=self.grid, cv_folds=self.cv_folds, gate=self.gates)
        self.rule.fit(cases)
        folds = self.rule._fold_fits
        if folds is None:  # a single setting: nothing was cross-validated, fit it without each fold
            setting = self.rule.weights["gate"], self.rule.weights["regularization"], False
            rule_rows = self.rule._rows(cases, None, None, None)
            folds = self.rule._cross_validate(cases, rule_rows, _labels(cases, rule_rows), [setting])[1][setting]
        fold = self._folds(len(cases))
        return [self._rule_scores(features, folds[fold[i]]) for i, (_, features) in enumerate(rows)]

    def _new_items(self, cases: list[EvalCase], rows: list[tuple[list[str], np.ndarray]]) -> list[np.ndarray] | None:
        """With `residual_items="new"`: per case, which pool items the rule's own pool (history, popular) lacks."""
        if self.residual_items != "new":
            return None
        return [np.array([item not in own for item in pool], dtype=bool)
                for case, (pool, _) in zip(cases, rows) for own in [set(self.rule.pool(case))]]

    def _rule_scores(self, features: np.ndarray, weights: Mapping[str, Any]) -> np.ndarray:
        """The rule's logit (its intercept included: the offset is a log-odds) of this reranker's rows: its columns
        are among them, found by name."""
        return _score(features[:, self._select(weights["features"])], weights) + weights["intercept"]

    def rank(self, cases: Sequence[Mapping[str, Any] | EvalCase], top_k: int,
             generated: Sequence[Sequence[str]] | None = None,
             model_scores: Sequence[Mapping[str, float]] | None = None,
             explored: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
        """Top_k pool items per case by fitted score (ties keep the pool order)."""
        if self.weights is None:
            raise RuntimeError("HistoryReranker is not fitted: call fit(validation_cases, ...) first")
        select = self._select(self.weights["features"])
        cases = as_cases(cases)
        rows = self._rows(cases, generated, model_scores, explored)
        new = self._new_items(cases, rows)
        return [_order(pool, features[:, select], self.weights, top_k,
                       self._rule_scores(features, self.rule.weights) if self.residual else None,
                       None if new is None else new[i])
                for i, (pool, features) in enumerate(rows)]

    def recommend(self, cases: Sequence[Mapping[str, Any] | EvalCase], top_k: int) -> list[list[str]]:
        """The recommender contract, for the model-free reranker (a GAMER one goes through GamerRecommender)."""
        if self.use_model:
            raise ValueError("this reranker needs GAMER's scores: use GamerRecommender(..., reranker=...)")
        return self.rank(cases, top_k)

    # ---------------------------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        """Settings and fitted weights as JSON-ready values (popularity counts are data: pass them again)."""
        return {"behaviors": self.behaviors, "use_model": self.use_model, "popular_pool": self.popular_pool,
                "regularization": self.grid if len(self.grid) > 1 else self.grid[0], "explore": self.explore,
                "cv_folds": self.cv_folds, "gate": self.gates if len(self.gates) > 1 else self.gates[0],
                "residual": self.residual, "residual_items": self.residual_items,
                "rule": self.rule.to_dict() if self.rule is not None else None,
                "weights": copy.deepcopy(self.weights)}  # a copy: editing the dict never changes the fitted reranker

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], popular: MostPopular | None = None,
                  source: str = "saved reranker") -> HistoryReranker:
        """The reranker `to_dict` wrote; `source` (its file, from `load`) names it in a DataError for weights this
        version cannot rank with."""
        if data["popular_pool"] and popular is None:
            raise ValueError("this reranker was fit with popularity counts: pass popular=MostPopular().fit(train)")
        try:  # the saved settings are checked as the constructor's arguments are
            reranker = cls(data["behaviors"], popular, data["use_model"], data["popular_pool"], data["regularization"],
                           data.get("explore", False),  # saved before explore beams existed: without them
                           data.get("cv_folds", 5), data.get("gate", False),  # saved before the gate: ungated
                           data.get("residual", False), data.get("residual_items", "all"))  # saved before: all items
        except ValueError as error:
            raise DataError(f"{source}: {error}") from None
        if data.get("rule") is not None:
            reranker.rule = cls.from_dict(data["rule"], popular, f"{source} (its rule)")
        weights = data.get("weights")
        if weights is not None and "rule_coef" in weights:
            raise DataError(f"{source} fits the rule's score with a free coefficient (rule_coef), as before the "
                            "rule's logit became a fixed offset: fit it again")
        if weights is not None:
            expected = list(reranker._setting_features(weights.get("gate", False), weights["regularization"],
                                                       weights.get("model_only", False)))  # saved before: all columns
            if list(weights["features"]) != expected:
                raise DataError(f"{source} has features {weights['features']}, this version uses {expected}")
        reranker.weights = data.get("weights")
        return reranker

    def save(self, path: str | os.PathLike[str]) -> None:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], popular: MostPopular | None = None) -> HistoryReranker:
        return cls.from_dict(read_json(path, error=DataError), popular, str(path))


def _labels(cases: list[EvalCase], rows: list[tuple[list[str], np.ndarray]]) -> list[np.ndarray]:
    """Per case, which pool items are targets."""
    return [np.array([item in set(case.target_items) for item in pool], dtype=bool) for case, (pool, _) in zip(cases, rows)]


def _stack(rows: list[tuple[list[str], np.ndarray]], labels: list[np.ndarray], offsets: list[np.ndarray] | None,
           new: list[np.ndarray] | None, chosen: Sequence[int], width: int | None = None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What a fit over the cases `chosen` reads: the rows of every pooled item (their first `width` columns), their
    labels and the rule's logit as the offset; with `new` (GAMER's new items only) those items' rows alone, without
    an offset."""
    keep = [slice(None) if new is None else new[i] for i in chosen]
    x = np.concatenate([rows[i][1][k, :width] for i, k in zip(chosen, keep)])
    y = np.concatenate([labels[i][k] for i, k in zip(chosen, keep)])
    offset = None if offsets is None or new is not None else np.concatenate([offsets[i] for i in chosen])
    return x, y, offset


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (1 for a constant column, which then stays 0)."""
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    return mean, scale


def _design(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The fit's columns: the intercept, then the standardized features."""
    return np.hstack([np.ones((len(x), 1)), (x - mean) / scale])


def _penalty(columns: int, regularization: float) -> np.ndarray:
    """L2 weight of each design column: 0 for the intercept, 1/C for the `columns` features."""
    return np.concatenate([[0.0], np.full(columns, 1.0 / regularization if columns else 0.0)])


def _newton(design: np.ndarray, y: np.ndarray, penalty: np.ndarray, start: np.ndarray | None = None,
            offset: np.ndarray | None = None) -> np.ndarray:
    """The minimizer of sum(log-loss) + sum(penalty * w**2) / 2 over logits design @ w + offset, scikit-learn's L2
    logistic regression with C = 1 / penalty and an unpenalized intercept (`design`'s first column), and with a
    fixed `offset` (a residual fit: the rule's logit, coefficient 1): Newton's method with step halving. On <= 100
    columns a step costs one Gram product, and from a nearby optimum a few steps reach it to machine precision,
    where lbfgs stops at a gradient of 1e-4."""
    offset = np.zeros(len(design)) if offset is None else offset
    if start is None:  # the intercept-only optimum without an offset (targets are rare, so w = 0 is far from any
        start = np.zeros(design.shape[1])  # fit); the rule's logit is already one, so 0 on top of it
        start[0] = 0.0 if offset.any() else math.log(y.mean() / (1.0 - y.mean()))
    weights = start.copy()
    logits = design @ weights + offset
    loss = _loss(logits, y, penalty, weights)
    for _ in range(_NEWTON_STEPS):
        probability = 0.5 * (1.0 + np.tanh(0.5 * logits))
        gradient = design.T @ (probability - y) + penalty * weights
        scaled = design * np.sqrt(probability * (1.0 - probability))[:, None]
        hessian = scaled.T @ scaled  # numpy's symmetric product of a matrix with itself: half the work of a GEMM
        hessian[np.diag_indices_from(hessian)] += penalty
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:  # an unpenalized column that is constant or separates the labels
            step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        decrement = float(gradient @ step)
        size = 1.0
        while True:  # halve until the loss falls enough; near the optimum the full step always does
            trial = weights - size * step
            trial_logits = design @ trial + offset
            trial_loss = _loss(trial_logits, y, penalty, trial)
            if trial_loss <= loss - 0.25 * size * decrement or size < 1e-8 or decrement < 1e-10 * max(1.0, loss):
                break
            size /= 2
        weights, logits, loss = trial, trial_logits, trial_loss
        if np.abs(size * step).max() <= 1e-7 * (1.0 + np.abs(weights).max()):  # quadratic: the error left is ~1e-14
            break
    return weights


def _loss(logits: np.ndarray, y: np.ndarray, penalty: np.ndarray, weights: np.ndarray) -> float:
    return float(np.logaddexp(0.0, logits).sum() - logits[y].sum() + 0.5 * penalty @ (weights * weights))


def _weights(solution: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> dict[str, Any]:
    """A solution of `_newton` on a `_design` as JSON-ready weights."""
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": solution[1:].tolist(),
            "intercept": float(solution[0])}


def _setting_key(gate: bool, regularization: float, model_only: bool) -> str:
    """A cross-validated setting as a JSON key, e.g. 'gated C=0.1', 'model only gated C=0.1' ('rule only': a residual
    fit's rule alone)."""
    if regularization <= 0:
        return "rule only"
    return f"{'model only ' if model_only else ''}{'gated' if gate else 'ungated'} C={regularization:g}"


def _score(columns: np.ndarray, weights: Mapping[str, Any]) -> np.ndarray:
    """The fitted linear score of rows (without the intercept and the rule); `columns` are the fit's features."""
    return ((columns - np.asarray(weights["mean"])) / np.asarray(weights["scale"])) @ np.asarray(weights["coef"])


def _order(pool: list[str], columns: np.ndarray, weights: Mapping[str, Any], top_k: int,
           rule: np.ndarray | None = None, new: np.ndarray | None = None) -> list[str]:
    """The top_k pool items by fitted score (`columns`: the fit's features of each), `rule` the rule's logit of each
    for a residual fit, its offset; with `new` (GAMER's new items only) the rule's items keep the rule's logit and the
    new ones get the fit's, intercept included, or with no columns (the rule alone) come after the rule's items
    (ties keep the pool order)."""
    if not pool:
        return []
    if new is None:
        score = _score(columns, weights) + (rule if rule is not None else 0.0)
    else:
        score = rule.copy()
        score[new] = _score(columns[new], weights) + weights["intercept"] if weights["features"] else -np.inf
    return [pool[i] for i in np.argsort(-score, kind="stable")[:top_k]]
