"""Residual k-means (RQ-KMeans): level l clusters what levels 1..l-1 left unexplained.

Coarse-to-fine codes are what make semantic IDs generatable: items sharing a prefix are similar,
so a decoder can commit to a region of the catalogue before picking the item.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from .kmeans import fit_kmeans, nearest_centers

__all__ = ["RQKMeans", "per_level_sizes"]


def per_level_sizes(codebook_size: int | Sequence[int], num_levels: int) -> list[int]:
    """One codebook size per level from an int (same for all) or an explicit list."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    sizes = [int(codebook_size)] * num_levels if isinstance(codebook_size, (int, np.integer)) else list(codebook_size)
    if len(sizes) != num_levels:
        raise ValueError(f"codebook_size lists {len(sizes)} sizes but num_levels is {num_levels}")
    if any(size < 1 for size in sizes):
        raise ValueError(f"every codebook size must be >= 1, got {sizes}")
    return sizes


def _subtract_centers(residual: np.ndarray, centers: np.ndarray, labels: np.ndarray, chunk: int = 1 << 16) -> None:
    """residual -= centers[labels] in place, in chunks: no second [n, d] array at millions of items."""
    for start in range(0, len(residual), chunk):
        residual[start : start + chunk] -= centers[labels[start : start + chunk]]


class RQKMeans:
    """Fit one k-means codebook per level on the residuals of the previous levels.

    `balanced=True` caps every cluster at `ceil(n / codebook_size)` items during fitting (codes of
    the fitted items honour the cap; `encode` on new rows uses plain nearest centers).
    """

    def __init__(
        self,
        num_levels: int = 4,
        codebook_size: int | Sequence[int] = 256,
        *,
        balanced: bool = False,
        seed: int = 0,
        max_iter: int = 50,
        progress: bool = True,
    ) -> None:
        self.codebook_sizes = per_level_sizes(codebook_size, num_levels)
        self.num_levels = num_levels
        self.balanced = balanced
        self.seed = seed
        self.max_iter = max_iter
        self.progress = progress  # a bar over the levels
        self.codebooks: list[np.ndarray] = []
        self.level_seconds: list[float] = []  # wall time of each level's fit, for reports at scale

    def fit_encode(self, x: np.ndarray) -> np.ndarray:
        """Fit the codebooks on `x` `[n, d]` and return its codes `[n, num_levels]` (int64)."""
        residual = np.array(x, dtype=np.float32, copy=True)
        codes = np.empty((len(residual), self.num_levels), dtype=np.int64)
        self.codebooks, self.level_seconds = [], []
        for level, size in enumerate(tqdm(self.codebook_sizes, desc="rq-kmeans levels", leave=False, disable=not self.progress)):
            start = time.perf_counter()
            result = fit_kmeans(
                residual, size, seed=self.seed + level, balanced=self.balanced, max_iter=self.max_iter
            )
            self.codebooks.append(result.centers)
            codes[:, level] = result.labels
            _subtract_centers(residual, result.centers, result.labels)
            self.level_seconds.append(time.perf_counter() - start)
        return codes

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes of new rows with the fitted codebooks (nearest center per level)."""
        if not self.codebooks:
            raise RuntimeError("RQKMeans.encode called before fit_encode")
        residual = np.array(x, dtype=np.float32, copy=True)
        codes = np.empty((len(residual), self.num_levels), dtype=np.int64)
        for level, centers in enumerate(self.codebooks):
            codes[:, level] = nearest_centers(residual, centers)
            _subtract_centers(residual, centers, codes[:, level])
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruction: the sum of the selected centers of every level."""
        if not self.codebooks:
            raise RuntimeError("RQKMeans.decode called before fit_encode")
        return sum(centers[codes[:, level]] for level, centers in enumerate(self.codebooks))
