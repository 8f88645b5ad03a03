"""K-means for one quantization level: plain or balanced (equal-capacity clusters).

Balanced clusters matter for semantic IDs because a skewed first level puts most of the catalogue
behind a few codes, which makes collisions and long beams far more likely.

Up to `SAMPLED_ABOVE` points the centers come from sklearn's full-batch Lloyd k-means on every
point. Past it (million-item catalogues) they are fitted on a uniform sample of `FIT_SAMPLE` points
per cluster (faiss's default `max_points_per_centroid`, for the same reason: more points per
center barely move it), the balanced refinement runs on that sample too, and then every point is
assigned once, in chunks (capacitated for balanced), and the centers become the means of their
points. Time is then one pass over the catalogue per level, and memory the embeddings plus a few
`[chunk, k]` blocks. sklearn's `MiniBatchKMeans`, used before, passed over all the points 50 times
per level (859 s for 4 levels at 1M items). sklearn rather than faiss: it is already a dependency,
its wheels need no CPU-specific build, and at 4 levels x 256 codes the chunked distance matmuls
(numpy BLAS) dominate either way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

__all__ = ["FIT_SAMPLE", "SAMPLED_ABOVE", "KMeansResult", "balanced_assign", "balanced_assign_points", "fit_kmeans",
           "nearest_centers", "squared_distances"]

SAMPLED_ABOVE = 200_000  # points; at or below it the full-batch path (and its exact results) is kept
FIT_SAMPLE = 256  # points per cluster the sampled path fits (and refines balanced) centers on
SEED_SAMPLE = 32  # points per cluster of that sample its k-means++ seeding reads (seeding costs ~2x Lloyd otherwise)
_CHUNK = 16384


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


def nearest_centers(x: np.ndarray, centers: np.ndarray, chunk: int = _CHUNK) -> np.ndarray:
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
    return _capacitated(dist.shape[0], dist.shape[1], capacity, lambda rows: dist[rows], chunk=max(len(dist), 1))


def balanced_assign_points(x: np.ndarray, centers: np.ndarray, capacity: int, chunk: int = _CHUNK) -> np.ndarray:
    """`balanced_assign(squared_distances(x, centers), capacity)` without the `[n, k]` matrix: rows in chunks."""
    return _capacitated(len(x), len(centers), capacity, lambda rows: squared_distances(x[rows], centers), chunk)


def _capacitated(n: int, k: int, capacity: int, distances: Callable[[np.ndarray], np.ndarray], chunk: int) -> np.ndarray:
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} clusters cannot hold {n} points")
    remaining = np.full(k, capacity, dtype=np.int64)
    labels = np.full(n, -1, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        full = remaining == 0
        choice = np.empty(pending.size, dtype=np.int64)
        nearest = np.empty(pending.size, dtype=np.float32)
        for start in range(0, pending.size, chunk):
            candidate = distances(pending[start : start + chunk])
            candidate[:, full] = np.inf
            choice[start : start + chunk] = candidate.argmin(1)
            nearest[start : start + chunk] = candidate[np.arange(len(candidate)), choice[start : start + chunk]]
        order = np.lexsort((nearest, choice))
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
    sampled: bool | None = None,
) -> KMeansResult:
    """Cluster `x` into at most `n_clusters` groups.

    With `balanced=True` the plain solution is refined by `balanced_iter` rounds of capacitated
    assignment (capacity `ceil(n / n_clusters)`) and center updates, so cluster sizes differ by at
    most one capacity unit. Fewer distinct points than clusters never raises: each distinct point
    becomes a center (deep residual levels of small catalogues hit this).

    `sampled` (default: more than `SAMPLED_ABOVE` points) fits on a sample and assigns everything in
    one chunked pass (module docstring); the cap on cluster sizes holds on both paths.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"k-means needs a non-empty [n, d] array, got shape {x.shape}")
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    sampled = len(x) > SAMPLED_ABOVE if sampled is None else sampled
    if len(x) <= n_clusters or _few_distinct(x, n_clusters, sampled, seed):
        return _distinct_points_fit(x)
    if not sampled:
        centers, labels = _lloyd(x, n_clusters, seed, max_iter)
        if balanced:
            centers, labels = _balanced_refine(x, centers, balanced_iter)
        return KMeansResult(centers=centers, labels=labels)
    chosen = np.random.default_rng(seed).choice(len(x), min(len(x), FIT_SAMPLE * n_clusters), replace=False)
    sample = x[np.sort(chosen)]  # in row order (faster reads); the seeding reads a random part of it
    centers, _ = _lloyd(sample, n_clusters, seed, max_iter, seed_from=x[chosen[: SEED_SAMPLE * n_clusters]])
    if balanced:
        centers = _balanced_refine(sample, centers, balanced_iter)[0]
        labels = balanced_assign_points(x, centers, math.ceil(len(x) / n_clusters))
    else:
        labels = nearest_centers(x, centers)
    return KMeansResult(centers=_means(x, labels, centers), labels=labels)


def _few_distinct(x: np.ndarray, n_clusters: int, sampled: bool, seed: int) -> bool:
    """No more distinct rows than clusters; past the sampling size a sample rules that out first."""
    if sampled:
        probe = x[np.random.default_rng(seed).choice(len(x), min(len(x), 4 * n_clusters + 1), replace=False)]
        if len(np.unique(probe, axis=0)) > n_clusters:
            return False
    return len(np.unique(x, axis=0)) <= n_clusters


def _lloyd(
    x: np.ndarray, n_clusters: int, seed: int, max_iter: int, seed_from: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd k-means on `x` from a k-means++ start seeded on the rows `seed_from` (default: `x`)."""
    # k-means++ is one small BLAS call per center; with several BLAS threads on a busy machine the
    # thread hand-offs cost 10-25x the arithmetic, so the seeding runs single-threaded.
    with threadpool_limits(limits=1):
        init, _ = kmeans_plusplus(x if seed_from is None else seed_from, n_clusters, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_clusters, init=init, n_init=1, max_iter=max_iter, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64)


def _means(x: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Mean of each cluster's rows; a cluster left empty keeps its center."""
    counts = np.bincount(labels, minlength=len(centers))
    one_hot = sp.csr_matrix((np.ones(len(labels), dtype=np.float32), (labels, np.arange(len(labels)))),
                            shape=(len(centers), len(labels)))
    sums = np.asarray(one_hot @ x)  # one pass over x (np.add.at takes seconds per million rows)
    out = centers.copy()
    filled = counts > 0
    out[filled] = sums[filled] / counts[filled, None]
    return out


def _balanced_refine(x: np.ndarray, centers: np.ndarray, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternate capacitated assignment (capacity ceil(n / k)) and center updates until labels settle."""
    capacity = math.ceil(len(x) / len(centers))
    labels = nearest_centers(x, centers)
    for _ in range(rounds):
        new_labels = balanced_assign_points(x, centers, capacity)
        centers = _means(x, new_labels, centers)
        converged = np.array_equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return centers, labels
