"""Pick and compute the item embeddings that the quantizers turn into codes.

Kinds:
- "text": sentence embeddings of each item's side information (see `text.py`), reduced to `dim`
  dimensions with PCA (384 raw dimensions make k-means several times slower for little gain);
- "collaborative": training co-occurrence, as PPMI-SVD (`collaborative.py`, default) or item2vec
  skip-gram vectors (`item2vec.py`), chosen with `collaborative=`;
- "hybrid": both, concatenated with weights sqrt(w) and sqrt(1 - w) so squared distances mix as
  w * text + (1 - w) * collaborative. Id-only side information (category, brand, price bucket)
  leaves many items with identical texts; the collaborative half separates them;
- "auto": hybrid when there is both an items table and interactions, else whichever exists.
Every catalogue item gets a row; items without signal for a part get a seeded random row for that
part (`fallback.py`), and the count is reported, split into items that occur in the training
sequences (alone in every sequence they occur in) and items that never occur there. With
`lone_items="profile"`, the training items that are alone in every sequence get their collaborative row
from their training profile instead (`profiles.py`), and the report says how many and how well that map fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA

from .collaborative import ItemPositions, collaborative_embeddings
from .fallback import fill_missing_rows
from .item2vec import Item2VecConfig, item2vec_embeddings
from .profiles import ProfileMap, item_profiles
from .text import text_embeddings, texts_from_items

__all__ = ["COLLABORATIVE_METHODS", "EMBEDDING_KINDS", "LONE_ITEMS", "ItemEmbeddings", "item_embeddings",
           "resolve_embedding_kind"]

EMBEDDING_KINDS = ("auto", "text", "collaborative", "hybrid")
PCA_SAMPLE = 200_000  # text rows the PCA is fitted on past this many items (the ids of Taobao-scale catalogues)
COLLABORATIVE_METHODS = ("ppmi", "item2vec")
LONE_ITEMS = ("random", "profile")  # the collaborative row of a training item alone in every sequence


@dataclass
class ItemEmbeddings:
    """Rows aligned with `item_ids`; `fallback_items` counts items given random rows (per part)."""

    item_ids: list[str]
    vectors: np.ndarray
    kind: str
    fallback_items: dict[str, int] = field(default_factory=dict)
    fallback_mask: np.ndarray | None = None  # rows with a random part (any part)
    seen_in_training: np.ndarray | None = None  # rows of items that occur in the training sequences
    alone_in_training: np.ndarray | None = None  # seen, but never beside another item (no co-occurrence)
    # the training co-occurrence counts (`cooccurrence_matrix` at `window`) PPMI-SVD read, for the report's
    # neighbour agreement: a second pass over the sequences takes minutes at millions of items
    cooccurrence: sp.csr_matrix | None = field(default=None, repr=False)
    profile_mask: np.ndarray | None = None  # rows mapped from the item's training profile (`lone_items="profile"`)
    profile_map: dict | None = None  # that map's choice and held-out fit (`ProfileMap.report`)

    def coverage(self) -> dict[str, float | int]:
        """How many items got learned rows: fallback counts over all items and over training items."""
        n = len(self.item_ids)
        fallback = self.fallback_mask if self.fallback_mask is not None else np.zeros(n, dtype=bool)
        out: dict[str, float | int] = {"items": n, "fallback_items": int(fallback.sum()),
                                       "fallback_share": float(fallback.mean()) if n else 0.0}  # fmt: skip
        if self.seen_in_training is not None:
            seen = self.seen_in_training
            out |= {"seen_in_training": int(seen.sum()), "unseen_in_training": int((~seen).sum()),
                    "fallback_seen_items": int((fallback & seen).sum()),
                    "fallback_share_of_seen": float((fallback & seen).sum() / seen.sum()) if seen.any() else 0.0}
        if self.alone_in_training is not None:  # why a training item got no learned row
            alone = self.alone_in_training
            out |= {"seen_alone": int(alone.sum()), "fallback_seen_alone": int((fallback & alone).sum()),
                    "fallback_seen_with_partner": int((fallback & seen & ~alone).sum())}
        if self.profile_mask is not None:
            out |= {"profile_items": int(self.profile_mask.sum()), "profile_map": self.profile_map}
        return out


def resolve_embedding_kind(kind: str, *, has_items: bool, has_sequences: bool) -> str:
    """The concrete kind for `kind`, or a ValueError saying which input is missing."""
    if kind not in EMBEDDING_KINDS:
        raise ValueError(f"unknown embedding kind {kind!r}; choose one of {EMBEDDING_KINDS}")
    if kind == "auto":
        if has_items and has_sequences:
            return "hybrid"
        if has_items or has_sequences:
            return "text" if has_items else "collaborative"
        raise ValueError("embedding kind 'auto' needs an items table or interaction sequences")
    if kind in ("text", "hybrid") and not has_items:
        raise ValueError(f"embedding kind {kind!r} needs an items table with side information")
    if kind in ("collaborative", "hybrid") and not has_sequences:
        raise ValueError(f"embedding kind {kind!r} needs interaction sequences")
    return kind


def _pca_rows(x: np.ndarray, dim: int, seed: int, rows: np.ndarray) -> np.ndarray:
    """`x[rows]` projected onto the top principal components of `x[rows]` (at most `dim`, fewer with
    few rows), L2-normalized. `x` holds each distinct text once; past `PCA_SAMPLE` rows the components
    come from a uniform sample of `rows`, so `[len(rows), 384]` is never built at millions of items."""
    components = min(dim, len(rows), x.shape[1])
    if components == x.shape[1]:
        return x[rows]
    pca = PCA(n_components=components, svd_solver="randomized", random_state=seed)
    if len(rows) <= PCA_SAMPLE:
        reduced = pca.fit_transform(x[rows])
    else:
        pca.fit(x[rows[np.sort(np.random.default_rng(seed).choice(len(rows), PCA_SAMPLE, replace=False))]])
        reduced = pca.transform(x)[rows]
    reduced = reduced.astype(np.float32, copy=False)
    norms = np.linalg.norm(reduced, axis=1, keepdims=True)
    return np.divide(reduced, norms, out=reduced, where=norms > 0)  # rows of norm 0 are zero already


def _text_part(
    item_ids: list[str], items: pd.DataFrame, id_column: str, dim: int, seed: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    texts = texts_from_items(items, id_column=id_column).reindex(item_ids)
    has_signal = texts.fillna("").str.len().to_numpy() > 0
    if not has_signal.any():
        raise ValueError(f"none of the {len(item_ids)} catalogue items has side information in the items table")
    distinct, rows = np.unique(texts[has_signal].to_numpy(dtype=str), return_inverse=True)
    encoded = _pca_rows(text_embeddings(distinct.tolist(), progress=progress), dim, seed, rows.reshape(-1))
    vectors = np.zeros((len(item_ids), encoded.shape[1]), dtype=np.float32)
    vectors[has_signal] = encoded
    return fill_missing_rows(vectors, ~has_signal, seed=seed), ~has_signal


def _collaborative_part(
    item_ids: list[str], sequences: list[list[str]], dim: int, window: int, method: str,
    item2vec: Item2VecConfig | None, seed: int, counts: sp.csr_matrix | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    if method == "item2vec":
        config = replace(item2vec or Item2VecConfig(), window=window)
        vectors, has_signal = item2vec_embeddings(sequences, item_ids, dim=dim, config=config, seed=seed)
    else:
        vectors, has_signal = collaborative_embeddings(None, item_ids, dim=dim, window=window, seed=seed,
                                                       counts=counts)
    if not has_signal.any():
        raise ValueError("no catalogue item co-occurs with another one in the given sequences")
    return vectors, has_signal


def _profile_rows(out: np.ndarray, vectors: np.ndarray, has_signal: np.ndarray, lone: np.ndarray,
                  positions: ItemPositions, position_behaviors: np.ndarray | None, num_behaviors: int | None,
                  seed: int) -> ProfileMap:
    """Set the `lone` rows of `out` from the items' training profiles, mapped by a `ProfileMap` fitted on the
    learned (`has_signal`) rows of `vectors`; returns that map."""
    if position_behaviors is None or len(position_behaviors) != len(positions.rows):
        raise ValueError("lone_items='profile' needs position_behaviors: the behavior code of every training "
                         f"position ({len(positions.rows)}), e.g. SemanticIdInputs.position_behaviors")
    if num_behaviors is None:
        num_behaviors = int(position_behaviors.max()) + 1 if len(position_behaviors) else 0
    profiles = item_profiles(positions, position_behaviors, num_behaviors)
    mapped = ProfileMap.fit(profiles[has_signal], vectors[has_signal], seed=seed)
    out[lone] = mapped.embed(profiles[lone], seed=seed)
    return mapped


def item_embeddings(
    item_ids: Sequence[str],
    *,
    kind: str = "auto",
    sequences: Iterable[Sequence[str]] | None = None,
    items: pd.DataFrame | None = None,
    id_column: str = "item_id",
    dim: int = 64,
    window: int = 5,
    hybrid_weight: float = 0.5,
    collaborative: str = "ppmi",
    item2vec: Item2VecConfig | None = None,
    seed: int = 0,
    lone_items: str = "random",
    position_behaviors: np.ndarray | None = None,
    num_behaviors: int | None = None,
    progress: bool = True,
) -> ItemEmbeddings:
    """Embeddings for every id in `item_ids` from side information (`items`) and/or `sequences`.

    `dim` is the width of each part: the SVD rank of the collaborative part and the PCA size of
    the text part (so a hybrid row has up to 2 * dim values).

    `collaborative` ("ppmi" or "item2vec") picks how the collaborative part is learned; `item2vec`
    tunes the skip-gram training (its window is `window`).

    `lone_items="profile"` maps the training profile of each item alone in every training sequence (behavior
    mix, popularity, repeats, position; `position_behaviors` gives the behavior code, 0 to `num_behaviors` - 1, of
    every position of the flattened `sequences`) to a collaborative row, the map fitted on the items with
    partners; `"random"` gives them the seeded random fallback like items never seen in training.

    `sequences` should hold training interactions only: co-occurrence with held-out items would leak
    the test targets into the codes.

    `progress=False` hides the text encoder's progress bar.
    """
    ids = [str(item) for item in item_ids]
    concrete = resolve_embedding_kind(kind, has_items=items is not None, has_sequences=sequences is not None)
    if not 0.0 < hybrid_weight < 1.0:
        raise ValueError(f"hybrid_weight must be in (0, 1), got {hybrid_weight}")
    if collaborative not in COLLABORATIVE_METHODS:
        raise ValueError(f"unknown collaborative embedding method {collaborative!r}; choose one of {COLLABORATIVE_METHODS}")
    if lone_items not in LONE_ITEMS:
        raise ValueError(f"unknown lone_items {lone_items!r}; choose one of {LONE_ITEMS}")
    if lone_items == "profile" and concrete == "text":  # refused, not ignored: it maps collaborative rows only
        raise ValueError(f"lone_items='profile' maps collaborative rows, and embedding {kind!r} is text only: use "
                         "embedding='collaborative' or 'hybrid', or lone_items='random'")
    sequences = None if sequences is None else list(sequences)
    positions = None if sequences is None else ItemPositions.encode(sequences, ids)  # one id lookup for every use
    counts = None
    if concrete in ("collaborative", "hybrid") and collaborative == "ppmi":
        counts = positions.cooccurrence(window)
    seen = alone = None
    if positions is not None:
        seen = positions.seen()
        alone = seen & ~positions.with_partner()
    parts, missing, profiled, mapped = [], {}, None, None
    if concrete in ("text", "hybrid"):
        vectors, missing["text"] = _text_part(ids, items, id_column, dim, seed, progress)
        parts.append(vectors * np.float32(np.sqrt(hybrid_weight)) if concrete == "hybrid" else vectors)
    if concrete in ("collaborative", "hybrid"):
        vectors, has_signal = _collaborative_part(ids, sequences, dim, window, collaborative, item2vec, seed, counts)
        filled = fill_missing_rows(vectors, ~has_signal, seed=seed + 1)  # the same random rows either way
        if lone_items == "profile":
            profiled = alone & ~has_signal
            mapped = _profile_rows(filled, vectors, has_signal, profiled, positions, position_behaviors,
                                   num_behaviors, seed)
            has_signal = has_signal | profiled
        missing["collaborative"], vectors = ~has_signal, filled
        parts.append(vectors * np.float32(np.sqrt(1.0 - hybrid_weight)) if concrete == "hybrid" else vectors)
    return ItemEmbeddings(
        item_ids=ids,
        vectors=(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)).astype(np.float32, copy=False),
        kind=concrete,
        fallback_items={part: int(mask.sum()) for part, mask in missing.items()},
        fallback_mask=np.logical_or.reduce(list(missing.values())),
        seen_in_training=seen,
        alone_in_training=alone,
        cooccurrence=counts,
        profile_mask=profiled,
        profile_map=None if mapped is None else mapped.report,
    )
