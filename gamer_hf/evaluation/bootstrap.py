"""Paired bootstrap over test cases: is model A's mean metric really different from model B's?

Both models are scored on the same cases, so resampling the cases (with replacement) and taking the
mean per-case difference in each resample keeps the pairing: case difficulty cancels, and one
seed's run gives an interval without retraining. The interval is the percentile interval of the
resampled mean differences.

Over training seeds, `seed_pooled_bootstrap` resamples the cases with every seed's values of a case kept
together, so the statistic is the difference of the seed-mean metric: every seed counts, none is picked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Difference", "paired_bootstrap", "seed_pooled_bootstrap"]


@dataclass(frozen=True)
class Difference:
    """mean(a - b) over the cases, its bootstrap interval at `confidence`, and the number of cases."""

    mean: float
    low: float
    high: float
    cases: int
    confidence: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, num_samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Difference:
    """Bootstrap interval of mean(a - b) for per-case metric values `a` and `b` of the same cases."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap needs two 1-d arrays over the same cases, got {a.shape} and {b.shape}")
    return _resampled(a - b, num_samples, confidence, seed)


def seed_pooled_bootstrap(
    a: np.ndarray, b: np.ndarray, *, num_samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Difference:
    """Bootstrap interval of seed-mean(a) - seed-mean(b) for [seeds, cases] per-case values of the same cases.

    A resample draws cases; each drawn case brings all its seeds' values of both models, so the interval covers
    case sampling of the seed-averaged models. `a` and `b` may hold different numbers of seeds (a rule is one).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not (a.shape[0] and b.shape[0]):
        raise ValueError(f"seed_pooled_bootstrap needs two [seeds, cases] arrays over the same cases, got {a.shape} "
                         f"and {b.shape}")
    return _resampled(a.mean(0) - b.mean(0), num_samples, confidence, seed)


def _resampled(difference: np.ndarray, num_samples: int, confidence: float, seed: int) -> Difference:
    """The percentile interval of the mean of `difference` (one value per case) over case resamples."""
    if difference.size == 0:
        raise ValueError("paired_bootstrap: no cases")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    rng = np.random.default_rng(seed)
    means = np.empty(num_samples)
    chunk = max(1, 2_000_000 // difference.size)  # bounded memory for large case sets
    for start in range(0, num_samples, chunk):
        rows = min(chunk, num_samples - start)
        means[start : start + rows] = difference[rng.integers(0, difference.size, (rows, difference.size))].mean(1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Difference(float(difference.mean()), float(low), float(high), int(difference.size), confidence)
