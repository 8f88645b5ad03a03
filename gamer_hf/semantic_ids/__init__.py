"""Semantic IDs: item embeddings -> short code tuples (RQ-KMeans, RQ-VAE, chunked IDs) -> tokenizer.

From prepared data to a tokenizer folder in one call (what `gamer-hf semantic-ids` runs)::

    build_tokenizer(SemanticIdArguments(data="runs/shop/prepared", out="runs/shop/tokenizer"))

The parts::

    from gamer_hf.semantic_ids import item_embeddings, build_semantic_ids, save_semantic_ids

    emb = item_embeddings(item_ids, kind="collaborative", sequences=train_sequences, collaborative="item2vec")
    sids = build_semantic_ids(item_ids, method="rqkmeans", embeddings=emb, balanced=True, sequences=train_sequences)
    print(sids.report.to_table())
    tokenizer = save_semantic_ids(sids, "out/tokenizer", behaviors={"click": 0, "cart": 1, "buy": 2})
"""

from .build import METHODS, SemanticIds, build_semantic_ids
from .cid import chunked_ids, min_cid_levels
from .collaborative import collaborative_embeddings, cooccurrence_matrix, ppmi, sequences_from_events, window_pairs
from .collisions import COLLISION_STRATEGIES, CollisionResolution, resolve_collisions
from .embeddings import COLLABORATIVE_METHODS, EMBEDDING_KINDS, ItemEmbeddings, item_embeddings
from .item2vec import Item2VecConfig, item2vec_embeddings
from .inputs import SemanticIdInputs, load_inputs
from .job import SemanticIdArguments, TokenizerBuild, build_tokenizer, build_tokenizer_from_inputs
from .kmeans import KMeansResult, fit_kmeans
from .report import LevelStats, NeighbourAgreement, SemanticIdReport, build_report, neighbour_agreement
from .rq_kmeans import RQKMeans
from .rq_vae import RQVAE, RQVAEConfig, RQVAEQuantizer
from .text import load_sentence_encoder, text_embeddings, texts_from_items
from .writer import REPORT_FILENAME, atomic_directory, save_semantic_ids

__all__ = [
    "COLLABORATIVE_METHODS",
    "COLLISION_STRATEGIES",
    "Item2VecConfig",
    "NeighbourAgreement",
    "item2vec_embeddings",
    "neighbour_agreement",
    "window_pairs",
    "EMBEDDING_KINDS",
    "METHODS",
    "REPORT_FILENAME",
    "CollisionResolution",
    "ItemEmbeddings",
    "KMeansResult",
    "LevelStats",
    "RQKMeans",
    "RQVAE",
    "RQVAEConfig",
    "RQVAEQuantizer",
    "SemanticIdArguments",
    "SemanticIdInputs",
    "SemanticIdReport",
    "SemanticIds",
    "TokenizerBuild",
    "atomic_directory",
    "build_report",
    "build_semantic_ids",
    "build_tokenizer",
    "build_tokenizer_from_inputs",
    "chunked_ids",
    "collaborative_embeddings",
    "cooccurrence_matrix",
    "fit_kmeans",
    "item_embeddings",
    "load_inputs",
    "load_sentence_encoder",
    "min_cid_levels",
    "ppmi",
    "resolve_collisions",
    "save_semantic_ids",
    "sequences_from_events",
    "text_embeddings",
    "texts_from_items",
]
