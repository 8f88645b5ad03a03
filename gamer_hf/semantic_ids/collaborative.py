"""Collaborative item embeddings for catalogues without side information.

Items that users interact with close together in time are related, so a windowed item-item
co-occurrence matrix, PPMI-weighted (Levy & Goldberg's context-smoothed variant, which equals
word2vec's implicit factorization) and truncated with a randomized SVD, gives dense vectors in
seconds for ~30k items, with no training loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

__all__ = ["ItemPositions", "sequences_from_events", "window_pairs", "items_with_partner", "cooccurrence_matrix", "ppmi",
           "collaborative_embeddings", "power_svd"]

EVENT_COLUMNS = ("user_id", "item_id")
_PMI_CHUNK = 1 << 22  # matrix entries per float64 block of the PMI
EXACT_SVD_UP_TO = 200_000  # items; up to it sklearn's randomized_svd (and its exact vectors) is kept
_OMEGA_BLOCK = 16  # columns of power_svd's random start drawn at once
POWER_ITERATIONS = 2  # power_svd's default: the fewest that keep neighbour agreement and collisions at 1M items (RESULTS.md)


def sequences_from_events(events: pd.DataFrame, column: str = "item_id") -> list[list[str]]:
    """One item list per user, in time order (input order breaks ties; no timestamp = input order).

    Accepts a pandas DataFrame or anything with `.to_pandas()` (a `datasets.Dataset`), with at least
    `user_id` and `item_id` columns and optionally `timestamp`. `column="behavior"` gives the behaviors of the
    same positions instead of the items.
    """
    if not isinstance(events, pd.DataFrame):
        if not hasattr(events, "to_pandas"):
            raise TypeError(f"events must be a pandas DataFrame or a datasets.Dataset, got {type(events).__name__}")
        events = events.to_pandas()
    missing = [name for name in dict.fromkeys([*EVENT_COLUMNS, column]) if name not in events.columns]
    if missing:
        raise ValueError(f"events table lacks column(s) {missing}; it has {list(events.columns)}")
    keys = ["user_id", "timestamp"] if "timestamp" in events.columns else ["user_id"]
    ordered = events.sort_values(keys, kind="stable")
    return ordered[column].astype(str).groupby(ordered["user_id"], sort=False).agg(list).tolist()


@dataclass(frozen=True)
class ItemPositions:
    """Every training position as a catalogue row (-1: not in the catalogue) and its sequence number.

    Looking the ids up is the expensive part of a co-occurrence pass at millions of items, so it is
    done once here, and the counts, the items with a partner and the items seen all read these arrays.
    """

    rows: np.ndarray  # [positions] catalogue row per position, -1 for ids outside the catalogue
    sequence: np.ndarray  # [positions] sequence number per position (non-decreasing)
    num_items: int

    @classmethod
    def encode(cls, sequences: Iterable[Sequence[str]], item_ids: Sequence[str]) -> ItemPositions:
        catalogue = pa.array([str(item) for item in item_ids], type=pa.string())
        if pc.count_distinct(catalogue).as_py() != len(catalogue):
            raise ValueError("item_ids contain duplicates")
        sequences = sequences if isinstance(sequences, list) else list(sequences)
        lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
        flat = np.fromiter(chain.from_iterable(sequences), dtype=object, count=int(lengths.sum()))
        try:  # Arrow's hash lookup: 2-3x pandas' Index.get_indexer on millions of str
            flat = pa.array(flat, type=pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # ids that are not str (ints from a DataFrame)
            flat = pa.array(flat.astype(str), type=pa.string())
        found = pc.index_in(flat, value_set=catalogue)
        del flat
        rows = found.fill_null(-1).to_numpy().astype(np.int32 if len(catalogue) < 2**31 else np.int64)
        number = np.repeat(np.arange(len(sequences), dtype=np.int32 if len(sequences) < 2**31 else np.int64), lengths)
        return cls(rows, number, len(catalogue))

    def pairs_by_distance(self, window: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(distance, left rows, right rows) of the pairs exactly `distance` positions apart, one distance
        at a time, so that a caller can reduce each before the next exists (millions of items)."""
        if window < 1:
            raise ValueError(f"co-occurrence window must be >= 1, got {window}")
        rows, sequence = self.rows, self.sequence
        for distance in range(1, window + 1):
            left, right = rows[:-distance], rows[distance:]
            keep = (sequence[:-distance] == sequence[distance:]) & (left >= 0) & (right >= 0) & (left != right)
            yield distance, left[keep], right[keep]

    def cooccurrence(self, window: int = 5) -> sp.csr_matrix:
        """`cooccurrence_matrix` of these positions."""
        n = self.num_items
        total = sp.csr_matrix((n, n), dtype=np.float32)
        for distance, left, right in self.pairs_by_distance(window):
            weight = np.full(2 * len(left), 1.0 / distance, dtype=np.float32)
            pairs = (np.concatenate([left, right]), np.concatenate([right, left]))
            total = total + sp.coo_matrix((weight, pairs), shape=(n, n)).tocsr()
        return total

    def seen(self) -> np.ndarray:
        """Mask over the catalogue: the item occurs at some position."""
        return np.bincount(self.rows[self.rows >= 0], minlength=self.num_items) > 0

    def with_partner(self) -> np.ndarray:
        """`items_with_partner` of these positions: items in a sequence with 2 or more distinct catalogue items."""
        known = self.rows >= 0
        rows, sequence = self.rows[known], self.sequence[known]
        out = np.zeros(self.num_items, dtype=bool)
        if not rows.size:
            return out
        starts = np.flatnonzero(np.r_[True, sequence[1:] != sequence[:-1]])
        lengths = np.diff(np.r_[starts, rows.size])
        mixed = np.minimum.reduceat(rows, starts) != np.maximum.reduceat(rows, starts)
        out[rows[np.repeat(mixed, lengths)]] = True
        return out


def window_pairs(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], *, window: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (into `item_ids`) of every ordered item pair at most `window` positions apart, and
    their distance: both directions of each pair, self-pairs and items outside `item_ids` left out
    (those still occupy their positions)."""
    rows, cols, distances = [], [], []
    for distance, left, right in ItemPositions.encode(sequences, item_ids).pairs_by_distance(window):
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
    return ItemPositions.encode(sequences, item_ids).with_partner()


def cooccurrence_matrix(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], *, window: int = 5
) -> sp.csr_matrix:
    """Symmetric `[n, n]` float32 counts of item pairs at most `window` positions apart, weighted 1/distance.

    Items outside `item_ids` still occupy their positions but add no pairs; self-pairs (an item
    repeated under another behavior) are dropped. Each distance is summed into the matrix before the
    next one's pairs are made, so memory is the matrix plus one distance's pairs.
    """
    if window < 1:  # before the ids are looked up
        raise ValueError(f"co-occurrence window must be >= 1, got {window}")
    return ItemPositions.encode(sequences, item_ids).cooccurrence(window)


def ppmi(counts: sp.csr_matrix, *, alpha: float = 0.75, keep_zeros: bool = False) -> sp.csr_matrix:
    """Positive PMI with context-distribution smoothing `alpha` (0.75 damps the pull of popular items).

    `keep_zeros` leaves the clipped entries stored as zeros, so the result shares `counts`' index arrays
    instead of copying them (0.8 GB at 4M items; matrix products are the same).
    """
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
    if keep_zeros:
        return sp.csr_matrix((pmi, counts.indices, counts.indptr), shape=counts.shape, copy=False)
    # copies: eliminate_zeros works in place, and the caller's counts share these arrays
    out = sp.csr_matrix((pmi, counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
    out.eliminate_zeros()
    return out


def _orthonormal(y: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """`y` (tall, modified in place) made an orthonormal basis of its columns by Cholesky QR, twice
    (CholeskyQR2): a `[k, k]` Gram and a triangular multiply by row chunks, where LAPACK's QR or LU of a
    4M x 74 matrix takes many times longer and a copy of it costs another 1.2 GB; QR if the Gram is singular."""
    for _ in range(2):
        gram = (y.T @ y).astype(np.float64)
        try:
            lower = np.linalg.cholesky(gram + np.eye(len(gram)) * 1e-12 * np.trace(gram))
        except np.linalg.LinAlgError:
            return np.linalg.qr(y)[0]
        inverse = np.linalg.inv(lower).T.astype(y.dtype)
        for start in range(0, len(y), chunk):
            y[start : start + chunk] = y[start : start + chunk] @ inverse
    return y


def power_svd(
    matrix: sp.csr_matrix, rank: int, *, n_iter: int = POWER_ITERATIONS, oversample: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-`rank` left singular vectors and values of sparse `matrix`: Halko et al.'s randomized range finder
    (`n_iter` power iterations, float32 products), then the small SVD from the `[k, k]` Gram of `Q^T M`.

    Same algorithm as `sklearn.utils.extmath.randomized_svd`, with the parts that dominate at millions of
    items made cheap: Cholesky QR instead of LU/QR between products, and an eigendecomposition of a
    `[k, k]` matrix instead of the SVD of a `[k, n]` one.
    """
    k = min(rank + oversample, min(matrix.shape))
    rng = np.random.default_rng(seed)
    q = np.empty((matrix.shape[0], k), dtype=np.float32)
    for start in range(0, k, _OMEGA_BLOCK):  # the [n, k] Gaussian start a few columns at a time
        width = min(_OMEGA_BLOCK, k - start)
        q[:, start : start + width] = matrix @ rng.standard_normal((matrix.shape[1], width), dtype=np.float32)
    q = _orthonormal(q)
    for _ in range(n_iter):  # at most two [n, k] arrays alive (1.2 GB each at 4M items)
        p = _orthonormal(matrix.T @ q)  # .T is a CSC view, no copy
        del q
        q = _orthonormal(matrix @ p)
        del p
    b_t = matrix.T @ q  # [n, k] = (Q^T M)^T
    values, vectors = np.linalg.eigh((b_t.T @ b_t).astype(np.float64))  # ascending: B B^T = W S^2 W^T
    del b_t
    top = np.argsort(values)[::-1][:rank]
    return q @ vectors[:, top].astype(np.float32), np.sqrt(np.maximum(values[top], 0.0)).astype(np.float32)


def collaborative_embeddings(
    sequences: Iterable[Sequence[str]] | None,
    item_ids: Sequence[str],
    *,
    dim: int = 64,
    window: int = 5,
    alpha: float = 0.75,
    seed: int = 0,
    counts: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalized `[n, dim]` vectors (rows aligned with `item_ids`) and a has-signal mask.

    Vectors are `U * sqrt(S)` of a rank-`dim` SVD of the PPMI matrix: sklearn's `randomized_svd` up to
    `EXACT_SVD_UP_TO` items (its results are kept), `power_svd` past it. Items without any positive PPMI
    entry get a zero row and `has_signal=False`; `item_embeddings` replaces those rows. `counts` is the
    `cooccurrence_matrix` of `sequences` when the caller has it already (then `sequences` is not read).
    """
    if counts is None:
        counts = cooccurrence_matrix(sequences, item_ids, window=window)
    weights = ppmi(counts, alpha=alpha, keep_zeros=True)  # the caller keeps counts: share their structure
    has_signal = np.diff(weights.indptr) > 0  # then: rows with a positive entry
    has_signal[has_signal] = np.maximum.reduceat(weights.data, weights.indptr[:-1][has_signal]) > 0
    rank = min(dim, len(item_ids) - 1)
    if rank < 1 or not has_signal.any():
        return np.zeros((len(item_ids), dim), dtype=np.float32), np.zeros(len(item_ids), dtype=bool)
    if len(item_ids) <= EXACT_SVD_UP_TO:
        u, s, _ = randomized_svd(weights, n_components=rank, n_iter=5, random_state=seed)
    else:
        u, s = power_svd(weights, rank, seed=seed)
    del weights
    vectors = np.zeros((len(item_ids), dim), dtype=np.float32)
    vectors[:, :rank] = u * np.sqrt(s)[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return vectors, has_signal & (norms[:, 0] > 0)
