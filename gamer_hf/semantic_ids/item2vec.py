"""item2vec: skip-gram with negative sampling over training sequences (Barkan & Koenigstein, 2016).

Every item that co-occurs with another one in a training sequence gets a vector trained to predict
its neighbours, including items seen a handful of times, which PPMI-SVD keeps only when a pair
clears the popularity-corrected PMI. Pairs come from `collaborative.window_pairs` (both directions,
within `window` positions) and weigh (window - distance + 1) / window, the expected weight of
word2vec's shrinking window. Negatives are drawn from the unigram distribution to the power 0.75.
Seeded: the same sequences, settings and seed give the same vectors (on one torch build and thread count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .collaborative import window_pairs

__all__ = ["Item2VecConfig", "item2vec_embeddings"]


@dataclass(frozen=True)
class Item2VecConfig:
    """Training settings of the skip-gram model (~10 s for 80k pairs of a 30k-item catalogue on one CPU thread)."""

    window: int = 5
    negatives: int = 5
    epochs: int = 10
    batch_size: int = 2048
    # Per-pair SGD rate: far above word2vec's 0.025 because a catalogue's pairs number in the
    # hundreds of thousands, not billions (0.5 over 10 epochs matched PPMI-SVD neighbours on retailrocket_cml).
    learning_rate: float = 0.5
    noise_exponent: float = 0.75

    def __post_init__(self) -> None:
        for name in ("window", "negatives", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"item2vec {name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"item2vec learning_rate must be positive, got {self.learning_rate}")

    def to_dict(self) -> dict:
        return asdict(self)


def _noise_cdf(sequences: list[Sequence[str]], item_ids: Sequence[str], exponent: float) -> torch.Tensor:
    """Cumulative unigram^exponent distribution: negatives are drawn by `searchsorted` on uniforms,
    O(log n) per draw (torch.multinomial rebuilds the distribution on every call)."""
    index = {str(item): row for row, item in enumerate(item_ids)}
    counts = np.zeros(len(item_ids), dtype=np.float64)
    for sequence in sequences:
        for item in sequence:
            row = index.get(str(item))
            if row is not None:
                counts[row] += 1.0
    cdf = np.cumsum(counts**exponent)
    return torch.from_numpy(cdf / cdf[-1])


def _averaged_step(table: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor, rate: float) -> None:
    """SGD on `table` with each touched row's gradient averaged over its occurrences in the batch.

    Summing instead would scale a popular item's step with its batch count and diverge at the rates
    a small corpus needs.
    """
    touched, inverse, counts = torch.unique(rows, return_inverse=True, return_counts=True)
    summed = torch.zeros(len(touched), table.shape[1]).index_add_(0, inverse, grads)
    table.index_add_(0, touched, summed / counts[:, None], alpha=-rate)


def item2vec_embeddings(
    sequences: Iterable[Sequence[str]],
    item_ids: Sequence[str],
    *,
    dim: int = 64,
    config: Item2VecConfig | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalized `[n, dim]` input vectors (rows aligned with `item_ids`) and a has-signal mask.

    Items without any co-occurrence pair (absent from the sequences, or alone in every sequence they
    occur in) get a zero row and `has_signal=False`; `item_embeddings` replaces those rows.
    """
    config = config or Item2VecConfig()
    if dim < 1:
        raise ValueError(f"item2vec dim must be >= 1, got {dim}")
    sequences = [list(sequence) for sequence in sequences]
    n = len(item_ids)
    centers, contexts, distances = window_pairs(sequences, item_ids, window=config.window)
    has_signal = np.bincount(centers, minlength=n) > 0
    vectors = np.zeros((n, dim), dtype=np.float32)
    if not has_signal.any():
        return vectors, has_signal
    generator = torch.Generator().manual_seed(seed)
    weights = torch.from_numpy((config.window - distances + 1) / config.window).float()
    centers_t, contexts_t = torch.from_numpy(centers), torch.from_numpy(contexts)
    noise = _noise_cdf(sequences, item_ids, config.noise_exponent)
    inputs = (torch.rand(n, dim, generator=generator) - 0.5) / dim
    outputs = torch.zeros(n, dim)
    steps = config.epochs * -(-len(centers_t) // config.batch_size)
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(len(centers_t), generator=generator)
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            # word2vec's linearly decaying rate and closed-form gradients (no autograd: a step touches
            # a few thousand rows, which index_add_ updates without densifying anything)
            rate = config.learning_rate * max(1e-4, 1.0 - step / steps)
            step += 1
            center, context = centers_t[rows], contexts_t[rows]
            uniform = torch.rand(len(rows) * config.negatives, generator=generator, dtype=torch.float64)
            negative = torch.searchsorted(noise, uniform).clamp_(max=n - 1)
            u, v = inputs[center], outputs[context]
            sampled = outputs[negative].view(len(rows), config.negatives, dim)
            weight = weights[rows]
            positive_grad = (torch.sigmoid((u * v).sum(-1)) - 1.0) * weight  # d loss / d (u . v)
            negative_grad = torch.sigmoid(torch.einsum("bd,bkd->bk", u, sampled)) * weight[:, None]
            grad_u = positive_grad[:, None] * v + torch.einsum("bk,bkd->bd", negative_grad, sampled)
            output_rows = torch.cat([context, negative])
            output_grad = torch.cat([positive_grad[:, None] * u, (negative_grad[..., None] * u[:, None, :]).view(-1, dim)])
            _averaged_step(outputs, output_rows, output_grad, rate)
            _averaged_step(inputs, center, grad_u, rate)

    vectors = inputs.numpy()  # trained in place: no second [n, dim] copy at millions of items
    vectors[~has_signal] = 0.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors, has_signal & (norms[:, 0] > 0)
