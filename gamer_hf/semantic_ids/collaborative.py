"""Collaborative item embeddings for catalogues without side information.

Items that users interact with close together in time are related, so a windowed item-item
co-occurrence matrix, PPMI-weighted (Levy & Goldberg's context-smoothed variant, which equals
word2vec's implicit factorization) and truncated with a randomized SVD, gives dense vectors in
seconds for ~30k items, with no training loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

__all__ = ["sequences_from_events", "window_pairs", "items_with_partner", "cooccurrence_matrix", "ppmi",
           "collaborative_embeddings"]

EVENT_COLUMNS = ("user_id", "item_id")
_PMI_CHUNK = 1 << 22  # matrix entries per float64 block of the PMI


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


def _pairs_by_distance(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], window: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(distance, left rows, right rows) of the pairs exactly `distance` positions apart, one distance
    at a time, so that a caller can reduce each before the next exists (millions of items)."""
    if window < 1:
        raise ValueError(f"co-occurrence window must be >= 1, got {window}")
    index = pd.Index([str(item) for item in item_ids])
    if not index.is_unique:
        raise ValueError("item_ids contain duplicates")
    sequences = sequences if isinstance(sequences, list) else list(sequences)
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    flat = pd.Index(np.fromiter(chain.from_iterable(sequences), dtype=object, count=int(lengths.sum())))
    position = index.get_indexer(flat.astype(str)).astype(np.int32 if len(index) < 2**31 else np.int64)
    del flat
    sequence = np.repeat(np.arange(len(sequences), dtype=np.int32 if len(sequences) < 2**31 else np.int64), lengths)
    for distance in range(1, window + 1):
        left, right = position[:-distance], position[distance:]
        keep = (sequence[:-distance] == sequence[distance:]) & (left >= 0) & (right >= 0) & (left != right)
        yield distance, left[keep], right[keep]


def window_pairs(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], *, window: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (into `item_ids`) of every ordered item pair at most `window` positions apart, and
    their distance: both directions of each pair, self-pairs and items outside `item_ids` left out
    (those still occupy their positions)."""
    rows, cols, distances = [], [], []
    for distance, left, right in _pairs_by_distance(sequences, item_ids, window):
        rows += [left, right]
        cols += [right, left]
        distances.append(np.full(2 * len(left), distance, dtype=np.int64))
    return (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
            np.concatenate(distances))


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
    """Symmetric `[n, n]` float32 counts of item pairs at most `window` positions apart, weighted 1/distance.

    Items outside `item_ids` still occupy their positions but add no pairs; self-pairs (an item
    repeated under another behavior) are dropped. Each distance is summed into the matrix before the
    next one's pairs are made, so memory is the matrix plus one distance's pairs.
    """
    n = len(item_ids)
    total = sp.csr_matrix((n, n), dtype=np.float32)
    for distance, left, right in _pairs_by_distance(sequences, item_ids, window):
        weight = np.full(2 * len(left), 1.0 / distance, dtype=np.float32)
        pairs = (np.concatenate([left, right]), np.concatenate([right, left]))
        total = total + sp.coo_matrix((weight, pairs), shape=(n, n)).tocsr()
    return total


def ppmi(counts: sp.csr_matrix, *, alpha: float = 0.75) -> sp.csr_matrix:
    """Positive PMI with context-distribution smoothing `alpha` (0.75 damps the pull of popular items)."""
    counts = sp.csr_matrix(counts)
    counts.sum_duplicates()
    row_sum = np.asarray(counts.sum(1, dtype=np.float64)).ravel()
    context = np.asarray(counts.sum(0, dtype=np.float64)).ravel() ** alpha
    pmi = np.empty(counts.nnz, dtype=np.float32)
    for start in range(0, counts.nnz, _PMI_CHUNK):  # float64 per chunk: no float64 copy of the whole matrix
        stop = min(start + _PMI_CHUNK, counts.nnz)
        row = np.searchsorted(counts.indptr, np.arange(start, stop), side="right") - 1
        with np.errstate(divide="ignore"):
            value = np.log(counts.data[start:stop].astype(np.float64) * context.sum()
                           / (row_sum[row] * context[counts.indices[start:stop]]))
        pmi[start:stop] = np.maximum(value, 0.0)
    # copies: eliminate_zeros works in place, and the caller's counts share these arrays
    out = sp.csr_matrix((pmi, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
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
