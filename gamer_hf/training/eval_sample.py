"""The validation cases a run evaluates: a fixed sample of the validation split.

The Trainer computes the validation loss over every case at every evaluation; on a large log
that was half of a run's wall time. A sample drawn once with a seed of its own (not the run's
seed, so that runs with other seeds are scored on the same cases) keeps the evaluations
comparable with each other while costing a bounded amount.
"""

from __future__ import annotations

import datasets
import numpy as np

__all__ = ["DEFAULT_MAX_EVAL_SAMPLES", "EVAL_SAMPLE_SEED", "evaluation_sample"]

DEFAULT_MAX_EVAL_SAMPLES = 2000  # bounds what each evaluation costs; 0 evaluates the whole split
EVAL_SAMPLE_SEED = 0


def evaluation_sample(split: datasets.Dataset, max_samples: int) -> datasets.Dataset:
    """At most `max_samples` cases of `split` (all when `max_samples` <= 0), in their original order."""
    if max_samples <= 0 or len(split) <= max_samples:
        return split
    chosen = np.random.default_rng(EVAL_SAMPLE_SEED).choice(len(split), size=max_samples, replace=False)
    return split.select(np.sort(chosen).tolist())
