"""Embeddings for catalogue items that have no signal (no side info, no training co-occurrence).

Such items still need codes. Giving them all the same vector (e.g. zeros) would pile them into one
code tuple and force a huge disambiguation level, so each gets its own seeded random direction with
the typical norm of the real rows: they spread evenly over the codebooks like unknown items should.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fill_missing_rows"]


def fill_missing_rows(embeddings: np.ndarray, missing: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Copy of `embeddings` whose rows flagged in `missing` are random vectors of the median row norm."""
    out = np.array(embeddings, dtype=np.float32, copy=True)
    missing = np.asarray(missing, dtype=bool)
    if not missing.any():
        return out
    present = out[~missing]
    scale = float(np.median(np.linalg.norm(present, axis=1))) if len(present) else 1.0
    noise = np.random.default_rng(seed).standard_normal((int(missing.sum()), out.shape[1])).astype(np.float32)
    out[missing] = noise / np.linalg.norm(noise, axis=1, keepdims=True) * (scale or 1.0)
    return out
