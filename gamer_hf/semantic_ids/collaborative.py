"""Collaborative item embeddings for catalogues without side information.

Items that users interact with close together in time are related, so a windowed item-item
co-occurrence matrix, PPMI-weighted (Levy & Goldberg's context-smoothed variant, which equals
word2vec's implicit factorization) and truncated with a randomized SVD, gives dense vectors in
seconds for ~30k items, with no training loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

__all__ = ["sequences_from_events", "window_pairs", "items_with_partner", "cooccurrence_matrix", "ppmi",
           "collaborative_embeddings"]

EVENT_COLUMNS = ("user_id", "item_id")


def sequences_from_events(events: pd.DataFrame) -> list[list[str]]:
    """One item list per user, in time order (input order breaks ties; no timestamp = input order).

    Accepts a pandas DataFrame or anything with `.to_pandas()` (a `datasets.Dataset`), with at least
    `user_id` and `item_id` columns and optionally `timestamp`.
    """
    if not isinstance(events, pd.DataFrame):
        if not hasattr(events, "to_pandas"):
            raise TypeError(f"events must be a pandas DataFrame or a datasets.Dataset, got {type(events).__name__}")
        events = events.to_pandas()
    missing = [column for column in EVENT_COLUMNS if column not in events.columns]
    if missing:
        raise ValueError(f"events table lacks column(s) {missing}; it has {list(events.columns)}")
    keys = ["user_id", "timestamp"] if "timestamp" in events.columns else ["user_id"]
    ordered = events.sort_values(keys, kind="stable")
    return ordered["item_id"].astype(str).groupby(ordered["user_id"], sort=False).agg(list).tolist()


def window_pairs(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], *, window: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (into `item_ids`) of every ordered item pair at most `window` positions apart, and
    their distance: both directions of each pair, self-pairs and items outside `item_ids` left out
    (those still occupy their positions)."""
    if window < 1:
        raise ValueError(f"co-occurrence window must be >= 1, got {window}")
    index = pd.Index([str(item) for item in item_ids])
    if not index.is_unique:
        raise ValueError("item_ids contain duplicates")
    sequences = list(sequences)
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    flat = pd.Index(np.fromiter(chain.from_iterable(sequences), dtype=object, count=int(lengths.sum())))
    position = index.get_indexer(flat.astype(str))
    sequence = np.repeat(np.arange(len(sequences)), lengths)
    rows, cols, distances = [], [], []
    for distance in range(1, window + 1):
        left, right = position[:-distance], position[distance:]
        keep = (sequence[:-distance] == sequence[distance:]) & (left >= 0) & (right >= 0) & (left != right)
        rows += [left[keep], right[keep]]
        cols += [right[keep], left[keep]]
        distances.append(np.full(2 * int(keep.sum()), distance, dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(rows) if rows else empty, np.concatenate(cols) if cols else empty,
            np.concatenate(distances) if distances else empty)


def items_with_partner(sequences: Iterable[Sequence[str]], item_ids: Sequence[str]) -> np.ndarray:
    """Mask over `item_ids`: the item shares some sequence with another distinct catalogue item.

    These are exactly the items `window_pairs` pairs with something (any window): the run of an
    item's repeats ends next to another item. An item seen only in sequences of itself (one
    interaction, or the same item clicked, carted and bought) has no co-occurrence signal at all.
    """
    index = pd.Index([str(item) for item in item_ids])
    sequences = list(sequences)
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    flat = pd.Index(np.fromiter(chain.from_iterable(sequences), dtype=object, count=int(lengths.sum())))
    position = index.get_indexer(flat.astype(str))
    sequence = np.repeat(np.arange(len(sequences)), lengths)
    known = position >= 0
    table = pd.DataFrame({"sequence": sequence[known], "position": position[known]})
    distinct = table.groupby("sequence")["position"].transform("nunique").to_numpy()
    out = np.zeros(len(index), dtype=bool)
    out[table["position"].to_numpy()[distinct > 1]] = True
    return out


def cooccurrence_matrix(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], *, window: int = 5
) -> sp.csr_matrix:
    """Symmetric `[n, n]` counts of item pairs at most `window` positions apart, weighted 1/distance.

    Items outside `item_ids` still occupy their positions but add no pairs; self-pairs (an item
    repeated under another behavior) are dropped.
    """
    rows, cols, distances = window_pairs(sequences, item_ids, window=window)
    n = len(item_ids)
    return sp.coo_matrix((1.0 / distances.astype(np.float32), (rows, cols)), shape=(n, n)).tocsr()


def ppmi(counts: sp.csr_matrix, *, alpha: float = 0.75) -> sp.csr_matrix:
    """Positive PMI with context-distribution smoothing `alpha` (0.75 damps the pull of popular items)."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    counts.sum_duplicates()
    row_sum = np.asarray(counts.sum(1)).ravel()
    context = np.asarray(counts.sum(0)).ravel() ** alpha
    row = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    with np.errstate(divide="ignore"):
        pmi = np.log(counts.data * context.sum() / (row_sum[row] * context[counts.indices]))
    out = sp.csr_matrix((np.maximum(pmi, 0.0).astype(np.float32), counts.indices, counts.indptr), shape=counts.shape)
    out.eliminate_zeros()
    return out


def collaborative_embeddings(
    sequences: Iterable[Sequence[str]],
    item_ids: Sequence[str],
    *,
    dim: int = 64,
    window: int = 5,
    alpha: float = 0.75,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalized `[n, dim]` vectors (rows aligned with `item_ids`) and a has-signal mask.

    Vectors are `U * sqrt(S)` of a rank-`dim` SVD of the PPMI matrix. Items without any positive
    PPMI entry get a zero row and `has_signal=False`; `item_embeddings` replaces those rows.
    """
    weights = ppmi(cooccurrence_matrix(sequences, item_ids, window=window), alpha=alpha)
    has_signal = np.diff(weights.indptr) > 0
    rank = min(dim, len(item_ids) - 1)
    if rank < 1 or not has_signal.any():
        return np.zeros((len(item_ids), dim), dtype=np.float32), np.zeros(len(item_ids), dtype=bool)
    u, s, _ = randomized_svd(weights, n_components=rank, n_iter=5, random_state=seed)
    vectors = np.zeros((len(item_ids), dim), dtype=np.float32)
    vectors[:, :rank] = u * np.sqrt(s)[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return vectors, has_signal & (norms[:, 0] > 0)
