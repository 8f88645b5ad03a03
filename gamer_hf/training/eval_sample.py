"""The validation cases a run evaluates: a fixed sample of the validation split.

The Trainer computes the validation loss over every case at every evaluation; on a large log
that was half of a run's wall time. A sample drawn once with a seed of its own (not the run's
seed, so that runs with other seeds are scored on the same cases) keeps the evaluations
comparable with each other while costing a bounded amount. The sampled rows are read as the
training rows are (`SplitRows`: positional reads of blocks, no memory map), so an evaluation's
pass over cases spread through the split leaves no pages of it resident.
"""

from __future__ import annotations

import datasets
import numpy as np

from gamer_hf.data.split_rows import SplitRows

__all__ = ["DEFAULT_MAX_EVAL_SAMPLES", "EVAL_SAMPLE_SEED", "evaluation_rows", "evaluation_sample"]

DEFAULT_MAX_EVAL_SAMPLES = 2000  # bounds what each evaluation costs; 0 evaluates the whole split
EVAL_SAMPLE_SEED = 0


def evaluation_rows(cases: int, max_samples: int) -> np.ndarray:
    """The indices of at most `max_samples` of `cases` cases (all when `max_samples` <= 0), ascending."""
    if max_samples <= 0 or cases <= max_samples:
        return np.arange(cases, dtype=np.int64)
    return np.sort(np.random.default_rng(EVAL_SAMPLE_SEED).choice(cases, size=max_samples, replace=False))


def evaluation_sample(split: datasets.Dataset, max_samples: int) -> SplitRows:
    """At most `max_samples` cases of `split` (all when `max_samples` <= 0), in their original order."""
    return SplitRows(split, evaluation_rows(len(split), max_samples))
