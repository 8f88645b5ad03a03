from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.semantic_ids.build import build_semantic_ids
from gamer_hf.semantic_ids.rq_vae import RQVAEConfig

FAST_VAE = RQVAEConfig(latent_dim=8, hidden_dims=(32,), warmup_steps=10, steps=20, batch_size=256)


@pytest.mark.parametrize(
    "method,options",
    [
        ("rqkmeans", {}),
        ("rqkmeans", {"balanced": True}),
        # reassign needs room: the largest blob (200 items) may share one level-1 code
        ("rqkmeans", {"collisions": "reassign", "codebook_size": [8, 256]}),
        ("rqvae", {"rqvae_config": FAST_VAE}),
        ("cid", {}),
    ],
)
def test_every_method_gives_distinct_tuples(blobs: np.ndarray, item_ids: list[str], method: str, options: dict) -> None:
    shape = {"num_levels": 2, "codebook_size": 8} if method != "cid" else {}
    result = build_semantic_ids(item_ids, method=method, embeddings=blobs, seed=0, **{**shape, **options})
    codes = np.array([result.item_index[item] for item in item_ids])
    assert set(result.item_index) == set(item_ids)
    assert len(np.unique(codes, axis=0)) == len(item_ids)
    assert (codes >= 0).all() and (codes < np.array(result.codebook_sizes)).all()
    assert result.report.collision_rate_after == 0.0
    assert result.report.num_levels == codes.shape[1] == len(result.codebook_sizes)
    assert result.parameters["method"] == method


def test_append_is_the_default_and_reported(blobs: np.ndarray, item_ids: list[str]) -> None:
    # 2 levels x 8 codes cannot give 600 items distinct tuples: a disambiguation level is required.
    result = build_semantic_ids(item_ids, embeddings=blobs, num_levels=2, codebook_size=8)
    report = result.report
    assert report.collision_handling == "append" and report.collision_rate > 0
    assert result.codebook_sizes[:2] == [8, 8] and result.codebook_sizes[2] == report.max_collision_group
    assert report.levels[-1].disambiguation


def test_cid_defaults_to_base_64_with_fewest_digits(item_ids: list[str]) -> None:
    result = build_semantic_ids(item_ids, method="cid")
    assert result.codebook_sizes == [64, 64]  # 600 items need 2 base-64 digits
    assert result.report.collision_rate == 0.0 and result.report.collision_handling == "none"


def test_same_seed_same_index(blobs: np.ndarray, item_ids: list[str]) -> None:
    first = build_semantic_ids(item_ids, embeddings=blobs, num_levels=2, codebook_size=8, seed=4)
    second = build_semantic_ids(item_ids, embeddings=blobs, num_levels=2, codebook_size=8, seed=4)
    assert first.item_index == second.item_index


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"method": "lsh"}, "unknown semantic-ID method"),
        ({"method": "rqkmeans"}, "needs item embeddings"),
        ({"method": "rqkmeans", "embeddings": np.zeros((3, 2))}, "one row per item"),
        ({"method": "rqkmeans", "embeddings": np.full((4, 2), np.nan)}, "row 0 .* NaN"),
        ({"method": "cid", "codebook_size": [4, 4]}, "one integer base"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_semantic_ids(["a", "b", "c", "d"], **kwargs)


def test_duplicate_items_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        build_semantic_ids(["a", "a"], method="cid")


@pytest.mark.parametrize("window", [5, 2])
def test_neighbour_agreement_reads_the_counts_the_embeddings_were_made_from(window: int) -> None:
    from gamer_hf.semantic_ids.collaborative import cooccurrence_matrix
    from gamer_hf.semantic_ids.embeddings import item_embeddings
    from gamer_hf.semantic_ids.report import neighbour_agreement

    rng = np.random.default_rng(0)
    ids = [f"i{i}" for i in range(60)]
    sequences = [[f"i{j}" for j in rng.integers(0, 30, 8) + 30 * (k % 2)] for k in range(80)]
    embedded = item_embeddings(ids, kind="collaborative", sequences=sequences, dim=4, window=window)
    np.testing.assert_array_equal(embedded.cooccurrence.toarray(),
                                  cooccurrence_matrix(sequences, ids, window=window).toarray())
    built = build_semantic_ids(ids, embeddings=embedded, num_levels=2, codebook_size=4, sequences=sequences)
    first = np.array([built.item_index[item][0] for item in ids])
    # plain vectors carry no counts: the same codes, and agreement counted from the sequences at window 5
    plain = build_semantic_ids(ids, embeddings=embedded.vectors, num_levels=2, codebook_size=4, sequences=sequences)
    assert [plain.item_index[item] for item in ids] == [built.item_index[item] for item in ids]
    assert built.report.neighbour_agreement == vars(neighbour_agreement(first, embedded.cooccurrence))
    assert plain.report.neighbour_agreement == vars(neighbour_agreement(first, cooccurrence_matrix(sequences, ids)))
