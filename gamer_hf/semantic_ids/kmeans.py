"""K-means for one quantization level: plain (sklearn Lloyd) or balanced (equal-capacity clusters).

Balanced clusters matter for semantic IDs because a skewed first level puts most of the catalogue
behind a few codes, which makes collisions and long beams far more likely.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

__all__ = ["KMeansResult", "fit_kmeans", "nearest_centers", "squared_distances", "balanced_assign"]


@dataclass(frozen=True)
class KMeansResult:
    """Centers `[k_eff, d]` and one label per point; `k_eff < n_clusters` when there are fewer distinct points."""

    centers: np.ndarray
    labels: np.ndarray


def squared_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """`[n, k]` squared Euclidean distances, computed as a matmul (never an `[n, k, d]` tensor)."""
    x = np.asarray(x, dtype=np.float32)
    centers = np.asarray(centers, dtype=np.float32)
    dist = (x * x).sum(1, keepdims=True) - 2.0 * (x @ centers.T) + (centers * centers).sum(1)[None, :]
    return np.maximum(dist, 0.0, out=dist)


def nearest_centers(x: np.ndarray, centers: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Index of the nearest center per row, chunked so memory stays bounded for large catalogues."""
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        out[start : start + chunk] = squared_distances(x[start : start + chunk], centers).argmin(1)
    return out


def balanced_assign(dist: np.ndarray, capacity: int) -> np.ndarray:
    """Assign each row to a column with at most `capacity` rows per column, preferring near columns.

    Vectorized proposal rounds: every unassigned point proposes to its nearest non-full cluster and
    each cluster keeps its closest proposers up to its remaining capacity. A kept point is never
    displaced, so the result is a greedy (not optimal) capacitated assignment.
    """
    n, k = dist.shape
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} clusters cannot hold {n} points")
    remaining = np.full(k, capacity, dtype=np.int64)
    labels = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        candidate = dist[pending]
        candidate[:, remaining == 0] = np.inf
        choice = candidate.argmin(1)
        order = np.lexsort((candidate[np.arange(pending.size), choice], choice))
        sorted_choice = choice[order]
        rank = np.arange(order.size) - np.searchsorted(sorted_choice, sorted_choice, side="left")
        accepted = rank < remaining[sorted_choice]
        labels[pending[order[accepted]]] = sorted_choice[accepted]
        remaining -= np.bincount(sorted_choice[accepted], minlength=k)
        pending = pending[labels[pending] < 0]
    return labels


def _distinct_points_fit(x: np.ndarray) -> KMeansResult:
    """Degenerate case (no more distinct points than clusters): every distinct point is its own center."""
    centers, labels = np.unique(x, axis=0, return_inverse=True)
    return KMeansResult(centers=centers.astype(np.float32), labels=labels.reshape(-1).astype(np.int64))


def fit_kmeans(
    x: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    balanced: bool = False,
    max_iter: int = 50,
    balanced_iter: int = 10,
) -> KMeansResult:
    """Cluster `x` into at most `n_clusters` groups.

    With `balanced=True` the plain solution is refined by `balanced_iter` rounds of capacitated
    assignment (capacity `ceil(n / n_clusters)`) and center updates, so cluster sizes differ by at
    most one capacity unit. Fewer distinct points than clusters never raises: each distinct point
    becomes a center (deep residual levels of small catalogues hit this).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"k-means needs a non-empty [n, d] array, got shape {x.shape}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    # Cheap bound first: np.unique over all rows is only needed when n is already small.
    if len(x) <= n_clusters or len(np.unique(x, axis=0)) <= n_clusters:
        return _distinct_points_fit(x)
    # k-means++ is one small BLAS call per center; with several BLAS threads on a busy machine the
    # thread hand-offs cost 10-25x the arithmetic, so the seeding runs single-threaded.
    with threadpool_limits(limits=1):
        init, _ = kmeans_plusplus(x, n_clusters, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_clusters, init=init, n_init=1, max_iter=max_iter, random_state=seed).fit(x)
    centers = km.cluster_centers_.astype(np.float32)
    labels = km.labels_.astype(np.int64)
    if not balanced:
        return KMeansResult(centers=centers, labels=labels)
    capacity = math.ceil(len(x) / n_clusters)
    for _ in range(balanced_iter):
        new_labels = balanced_assign(squared_distances(x, centers), capacity)
        counts = np.bincount(new_labels, minlength=n_clusters)
        sums = np.zeros_like(centers)
        np.add.at(sums, new_labels, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        converged = np.array_equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return KMeansResult(centers=centers, labels=labels)
