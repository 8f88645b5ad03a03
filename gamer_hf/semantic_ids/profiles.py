"""Embeddings for training items that co-occur with nothing, learned from how the log describes them.

An item that occurs in training only in sequences of itself (one interaction, or the same item clicked, carted
and bought) has no co-occurrence partner, so PPMI-SVD and item2vec cannot place it. The training log still
describes it: its behavior mix, how popular it is, how often a user comes back to it, where in the sequences it
sits. `ProfileMap` learns a map from those profile features to the collaborative embedding space on the items
that do have partners (ridge regression or k nearest neighbours, chosen by the fit on held-out partnered items,
training items only) and applies it to the lone ones, so they get an embedding learned from training data instead
of a random direction. Items with the same profile get the same prediction, so each mapped row also gets a seeded
residual with the spread the held-out items showed around their predictions: without it, hundreds of one-click
items would share one code tuple.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .collaborative import ItemPositions

__all__ = ["PROFILE_STATS", "ProfileMap", "item_profiles", "profile_feature_names"]

# Per item, over its training positions; with one share per behavior before them (`profile_feature_names`).
PROFILE_STATS: tuple[str, ...] = (
    "log_interactions",  # log(1 + training interactions with the item): popularity
    "log_sequences",  # log(1 + training sequences it occurs in): reach
    "log_repeats",  # log(interactions per sequence it occurs in): how often a user comes back to it
    "mean_position",  # mean relative position in its sequences (0 first, 1 last; 0.5 in a sequence of one)
    "last_share",  # share of its occurrences that end their sequence (the position a training row predicts)
)
RIDGE_ALPHAS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
KNN_SIZES: tuple[int, ...] = (5, 20, 50)
HELD_OUT_SHARE = 0.2  # of the partnered items, to choose the map on


def profile_feature_names(behaviors: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"share_{name}" for name in behaviors) + PROFILE_STATS


def item_profiles(positions: ItemPositions, behavior_codes: np.ndarray, num_behaviors: int) -> np.ndarray:
    """[num_items, num_behaviors + len(PROFILE_STATS)] profile rows; `behavior_codes` is each training position's
    behavior as an index into the behaviors (aligned with `positions.rows`). Items never in training get zeros."""
    known = positions.rows >= 0
    rows, sequence, behavior = positions.rows[known], positions.sequence[known], np.asarray(behavior_codes)[known]
    n = positions.num_items
    count = np.bincount(rows, minlength=n).astype(np.float64)
    safe = np.maximum(count, 1.0)
    shares = np.stack([np.bincount(rows[behavior == b], minlength=n) for b in range(num_behaviors)], 1) / safe[:, None]
    # positions within their sequences (over every position, catalogue or not: the sequence's own length)
    starts = np.flatnonzero(np.r_[True, positions.sequence[1:] != positions.sequence[:-1]])
    lengths = np.diff(np.r_[starts, len(positions.sequence)])
    offset = np.arange(len(positions.sequence)) - np.repeat(starts, lengths)
    length = np.repeat(lengths, lengths)
    relative = np.where(length > 1, offset / np.maximum(length - 1, 1), 0.5)[known]
    last = (offset == length - 1)[known]
    width = int(sequence.max()) + 1 if len(sequence) else 1
    reach = np.bincount(np.unique(rows.astype(np.int64) * width + sequence) // width, minlength=n).astype(np.float64)
    stats = np.stack([np.log1p(count), np.log1p(reach), np.log(safe / np.maximum(reach, 1.0)),
                      np.bincount(rows, relative, minlength=n) / safe, np.bincount(rows, last, minlength=n) / safe], 1)
    return np.concatenate([shares, stats], 1).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _mean_cosine(predicted: np.ndarray, target: np.ndarray) -> float:
    return float((_unit(predicted) * _unit(target)).sum(1).mean()) if len(target) else 0.0


@dataclass
class ProfileMap:
    """A fitted map from profile rows to embedding rows, and how well it fit held-out partnered items."""

    model: str  # "ridge" or "knn"
    setting: float  # ridge alpha or the number of neighbours
    mean: np.ndarray
    scale: np.ndarray
    fit_profiles: np.ndarray  # standardized profiles of every partnered item (the neighbours of "knn")
    fit_vectors: np.ndarray
    coef: np.ndarray | None  # ridge: [features + 1, dim]
    residual_scale: np.ndarray  # per-dimension std of the held-out residuals
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, profiles: np.ndarray, vectors: np.ndarray, *, seed: int = 0,
            ridge_alphas: Sequence[float] = RIDGE_ALPHAS, knn_sizes: Sequence[int] = KNN_SIZES) -> ProfileMap:
        """Choose ridge or kNN (and its setting) by the share of embedding variance it explains on a seeded
        `HELD_OUT_SHARE` of the rows (R^2; 0 is the constant mean), then refit the chosen one on every row. Rows are
        partnered training items. The report also gives the mean cosine of prediction and embedding, against that
        of the mean embedding and of a random other item's embedding (chance)."""
        if len(profiles) < 10:
            raise ValueError(f"a profile map needs at least 10 items with learned embeddings, got {len(profiles)}")
        rng = np.random.default_rng(seed)
        held = np.zeros(len(profiles), dtype=bool)
        held[rng.choice(len(profiles), max(1, int(len(profiles) * HELD_OUT_SHARE)), replace=False)] = True
        target = vectors[held]
        spread = ((target - vectors[~held].mean(0)) ** 2).sum()
        candidates: dict[str, float] = {}
        fitted: dict[str, ProfileMap] = {}
        for model, settings in (("ridge", ridge_alphas), ("knn", knn_sizes)):
            for setting in settings:
                if model == "knn" and setting > (~held).sum():
                    continue
                key = f"{model} {setting:g}"
                fitted[key] = cls._fit(model, float(setting), profiles[~held], vectors[~held])
                residual = target - fitted[key].predict_mean(profiles[held])
                candidates[key] = float(1.0 - (residual**2).sum() / spread) if spread > 0 else 0.0
        best = max(candidates, key=candidates.get)  # ties: the first, i.e. ridge with the least shrinkage
        predicted = fitted[best].predict_mean(profiles[held])
        refit = cls._fit(fitted[best].model, fitted[best].setting, profiles, vectors)
        refit.residual_scale = (target - predicted).std(0)
        refit.report = {"model": best, "held_out_items": int(held.sum()), "fit_items": int((~held).sum()),
                        "held_out_r2": candidates[best], "held_out_cosine": _mean_cosine(predicted, target),
                        "mean_embedding_cosine": _mean_cosine(np.broadcast_to(vectors[~held].mean(0), target.shape),
                                                              target),
                        "random_item_cosine": _mean_cosine(target[rng.permutation(len(target))], target),
                        "candidates_r2": candidates}
        return refit

    @classmethod
    def _fit(cls, model: str, setting: float, profiles: np.ndarray, vectors: np.ndarray) -> ProfileMap:
        mean, scale = profiles.mean(0), profiles.std(0)
        scale[scale == 0] = 1.0
        z = (profiles - mean) / scale
        coef = None
        if model == "ridge":
            design = np.hstack([z, np.ones((len(z), 1))])
            penalty = np.eye(design.shape[1]) * setting
            penalty[-1, -1] = 0.0  # the intercept is not shrunk
            coef = np.linalg.solve(design.T @ design + penalty, design.T @ vectors)
        return cls(model, setting, mean, scale, z.astype(np.float32), vectors.astype(np.float32), coef,
                   np.zeros(vectors.shape[1], dtype=np.float32))

    def predict_mean(self, profiles: np.ndarray) -> np.ndarray:
        """The map's prediction (no residual) for profile rows."""
        z = (profiles - self.mean) / self.scale
        if self.model == "ridge":
            return np.hstack([z, np.ones((len(z), 1))]) @ self.coef
        k = int(self.setting)
        out = np.empty((len(z), self.fit_vectors.shape[1]), dtype=np.float64)
        for start in range(0, len(z), 1024):  # [block, fit items] distances at a time
            block = z[start : start + 1024]
            distance = (block**2).sum(1)[:, None] - 2 * block @ self.fit_profiles.T + (self.fit_profiles**2).sum(1)
            nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
            out[start : start + 1024] = self.fit_vectors[nearest].mean(1)
        return out

    def embed(self, profiles: np.ndarray, seed: int = 0) -> np.ndarray:
        """Unit rows for items without partners: the prediction plus a seeded residual of the held-out spread."""
        noise = np.random.default_rng(seed).standard_normal((len(profiles), len(self.residual_scale)))
        return _unit(self.predict_mean(profiles) + noise * self.residual_scale).astype(np.float32)
