"""One entry point from items (and their embeddings) to unique code tuples plus a quality report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..modeling.item_index_gamer import ItemIndex
from .cid import chunked_ids
from .collaborative import cooccurrence_matrix
from .collisions import resolve_collisions
from .embeddings import ItemEmbeddings
from .report import SemanticIdReport, build_report, neighbour_agreement
from .rq_kmeans import RQKMeans
from .rq_vae import RQVAEConfig, RQVAEQuantizer

__all__ = ["METHODS", "SemanticIds", "build_semantic_ids"]

METHODS = ("rqkmeans", "rqvae", "cid")
FIT_ON = ("all", "learned")  # which items' embeddings the quantizer is fitted on
SID_DEFAULTS = {"num_levels": 4, "codebook_size": 256}  # reference semantic IDs: 4 levels x 256 codes
CID_DEFAULT_BASE = 64


@dataclass
class SemanticIds:
    """Item id -> code tuple (all tuples distinct), the per-level codebook sizes, and how they were made.

    `item_index` is the tokenizer's array-backed `ItemIndex` (a read-only Mapping, iterated in sorted
    id order): a dict of tuples takes seconds and gigabytes to build at millions of items.
    """

    item_index: ItemIndex
    codebook_sizes: list[int]
    report: SemanticIdReport
    parameters: dict


def _check_embeddings(embeddings: np.ndarray | None, num_items: int, method: str) -> np.ndarray:
    if embeddings is None:
        raise ValueError(f"method {method!r} needs item embeddings (one row per item)")
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or len(array) != num_items:
        raise ValueError(f"embeddings of shape {array.shape} do not give one row per item ({num_items} items)")
    bad = np.flatnonzero(~np.isfinite(array).all(1))
    if bad.size:
        raise ValueError(f"embeddings row {bad[0]} (and {bad.size - 1} more) contain NaN or inf")
    return array


def build_semantic_ids(
    item_ids: Sequence[str],
    *,
    method: str = "rqkmeans",
    embeddings: np.ndarray | ItemEmbeddings | None = None,
    num_levels: int | None = None,
    codebook_size: int | Sequence[int] | None = None,
    balanced: bool = False,
    collisions: str = "append",
    seed: int = 0,
    rqvae_config: RQVAEConfig | None = None,
    sequences: Sequence[Sequence[str]] | None = None,
    neighbours: int = 10,
    fit_on: str = "all",
    progress: bool = True,
) -> SemanticIds:
    """Codes for `item_ids` with `method` ("rqkmeans", "rqvae" or "cid"), made collision-free.

    `embeddings` (`[n, d]`, rows aligned with `item_ids`) are needed for rqkmeans/rqvae and ignored
    by cid. Defaults: 4 levels x 256 codes for rqkmeans/rqvae; for cid, base 64 with the fewest
    digits that fit the catalogue. `collisions` is "append" (extra disambiguation level, default)
    or "reassign" (see `collisions.py`); `balanced` applies to rqkmeans only.

    Given `ItemEmbeddings`, the report records their coverage (fallback share, items unseen in
    training); given the training `sequences`, it records neighbour agreement with each item's
    `neighbours` strongest co-occurrence neighbours.

    `fit_on="learned"` (rqkmeans/rqvae, with `ItemEmbeddings`) fits the codebooks on the items whose
    embedding was learned and only encodes the fallback items with them: random rows then take no
    codebook capacity (with balanced RQ-KMeans, the cap applies to learned items), and fallback items
    land next to whatever learned region their random direction points to.

    `progress=False` hides the quantizer's progress bar (levels, or RQ-VAE steps).
    """
    if fit_on not in FIT_ON:
        raise ValueError(f"unknown fit_on {fit_on!r}; choose one of {FIT_ON}")
    if method not in METHODS:
        raise ValueError(f"unknown semantic-ID method {method!r}; choose one of {METHODS}")
    ids = [str(item) for item in item_ids]
    if not ids:
        raise ValueError("build_semantic_ids: no items given")
    if len(set(ids)) != len(ids):
        raise ValueError("build_semantic_ids: item_ids contain duplicates")
    start = time.perf_counter()
    coverage, learned, counts = {}, None, None
    if isinstance(embeddings, ItemEmbeddings):
        counts = embeddings.cooccurrence
        if embeddings.item_ids != ids:
            raise ValueError("embeddings were computed for other item ids (or another order) than item_ids")
        if embeddings.fallback_mask is not None:
            learned = ~embeddings.fallback_mask
        coverage, embeddings = embeddings.coverage(), embeddings.vectors
    if fit_on == "learned" and method != "cid" and (learned is None or not learned.any()):
        raise ValueError("fit_on='learned' needs ItemEmbeddings with at least one learned (non-fallback) row")
    parameters: dict = {"method": method, "collisions": collisions, "seed": seed}
    if method == "cid":
        base = CID_DEFAULT_BASE if codebook_size is None else codebook_size
        if not isinstance(base, (int, np.integer)):
            raise ValueError(f"cid needs one integer base as codebook_size, got {base!r}")
        codes = chunked_ids(ids, base=int(base), num_levels=num_levels, seed=seed)
        sizes = [int(base)] * codes.shape[1]
    else:
        x = _check_embeddings(embeddings, len(ids), method)
        levels = SID_DEFAULTS["num_levels"] if num_levels is None else num_levels
        size = SID_DEFAULTS["codebook_size"] if codebook_size is None else codebook_size
        if method == "rqkmeans":
            quantizer = RQKMeans(levels, size, balanced=balanced, seed=seed, progress=progress)
            parameters["balanced"] = balanced
        else:
            quantizer = RQVAEQuantizer(levels, size, config=rqvae_config, seed=seed, progress=progress)
            parameters["rqvae"] = quantizer.config.to_dict()
        if fit_on == "learned":
            codes = np.empty((len(x), levels), dtype=np.int64)
            codes[learned] = quantizer.fit_encode(x[learned])
            if not learned.all():
                codes[~learned] = quantizer.encode(x[~learned])
            parameters["fit_on"] = fit_on
        else:
            codes = quantizer.fit_encode(x)
        sizes = quantizer.codebook_sizes
        parameters["embedding_dim"] = int(x.shape[1])
    parameters.update(num_levels=len(sizes), codebook_size=list(sizes))
    quantized = time.perf_counter()
    resolved = resolve_collisions(codes, sizes, strategy=collisions)
    report = build_report(
        method,
        codes,
        resolved.codes,
        resolved.codebook_sizes,
        resolved.applied,
        timings={"quantize": quantized - start, "collisions": time.perf_counter() - quantized},
    )
    if method == "rqkmeans":
        levels = enumerate(quantizer.level_seconds, start=1)
        report.timings |= {f"quantize_level_{level}": seconds for level, seconds in levels}
    report.embedding_coverage = coverage
    if sequences is not None:
        counts = cooccurrence_matrix(sequences, ids) if counts is None else counts
        agreement = neighbour_agreement(resolved.codes[:, 0], counts, neighbours)
        report.neighbour_agreement = asdict(agreement)
    index = ItemIndex.from_pairs(ids, resolved.codes)
    return SemanticIds(item_index=index, codebook_sizes=resolved.codebook_sizes, report=report, parameters=parameters)
