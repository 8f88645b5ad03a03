"""item2vec: skip-gram vectors for every item with a co-occurrence partner, seeded, grouping related items."""

from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.semantic_ids import Item2VecConfig, build_semantic_ids, item2vec_embeddings, item_embeddings

FAST = Item2VecConfig(epochs=5, batch_size=256)


def _communities(seed: int = 0, users: int = 300, groups: int = 4, per_group: int = 15) -> tuple[list, list]:
    """Users browse inside one of `groups` disjoint item groups; returns (sequences, item ids)."""
    rng = np.random.default_rng(seed)
    ids = [f"g{g}_{i}" for g in range(groups) for i in range(per_group)]
    sequences = []
    for _ in range(users):
        group = int(rng.integers(groups))
        sequences.append([f"g{group}_{i}" for i in rng.integers(0, per_group, size=int(rng.integers(3, 9)))])
    return sequences, ids


def test_vectors_group_items_that_co_occur() -> None:
    sequences, ids = _communities()
    vectors, has_signal = item2vec_embeddings(sequences, ids, dim=16, config=FAST)
    assert has_signal.all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    group = np.array([int(item[1]) for item in ids])
    cosine = vectors @ vectors.T
    same = group[:, None] == group[None, :]
    np.fill_diagonal(same, False)
    other = group[:, None] != group[None, :]
    assert cosine[same].mean() > cosine[other].mean() + 0.3


def test_items_without_a_partner_have_no_signal_and_are_reported() -> None:
    sequences, ids = _communities(users=100)
    sequences += [["alone", "alone"]]  # occurs in training, but never next to another item
    ids += ["alone", "never"]  # "never" is not in any training sequence
    vectors, has_signal = item2vec_embeddings(sequences, ids, dim=8, config=FAST)
    assert not has_signal[-2:].any() and has_signal[:-2].all() and not vectors[-2:].any()
    embedded = item_embeddings(ids, kind="collaborative", sequences=sequences, dim=8, collaborative="item2vec",
                               item2vec=FAST)  # fmt: skip
    assert embedded.coverage() == {
        "items": len(ids), "fallback_items": 2, "fallback_share": 2 / len(ids), "seen_in_training": len(ids) - 1,
        "unseen_in_training": 1, "fallback_seen_items": 1, "fallback_share_of_seen": 1 / (len(ids) - 1),
        "seen_alone": 1, "fallback_seen_alone": 1, "fallback_seen_with_partner": 0,
    }  # fmt: skip


def test_seeded_and_reproducible() -> None:
    sequences, ids = _communities(users=80)
    first, _ = item2vec_embeddings(sequences, ids, dim=8, config=FAST, seed=3)
    again, _ = item2vec_embeddings(sequences, ids, dim=8, config=FAST, seed=3)
    other, _ = item2vec_embeddings(sequences, ids, dim=8, config=FAST, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("negatives", 0), ("learning_rate", 0.0)])
def test_bad_settings_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"item2vec {field}"):
        Item2VecConfig(**{field: value})


def test_unknown_collaborative_method_is_refused() -> None:
    sequences, ids = _communities(users=20)
    with pytest.raises(ValueError, match="unknown collaborative embedding method 'svd'"):
        item_embeddings(ids, kind="collaborative", sequences=sequences, collaborative="svd")


@pytest.mark.parametrize("collaborative", ["ppmi", "item2vec"])
def test_codes_from_collaborative_vectors_agree_with_co_occurrence(collaborative: str) -> None:
    sequences, ids = _communities(groups=4, per_group=30, users=600)
    embedded = item_embeddings(ids, kind="collaborative", sequences=sequences, dim=8, collaborative=collaborative,
                               item2vec=FAST)  # fmt: skip
    result = build_semantic_ids(ids, embeddings=embedded, num_levels=2, codebook_size=4, balanced=True,
                                sequences=sequences, seed=0)  # fmt: skip
    agreement = result.report.neighbour_agreement
    assert agreement["items"] == len(ids) and agreement["neighbours"] == 10
    assert agreement["chance"] == pytest.approx(29 / 119, abs=0.01)  # 4 balanced first codes of 30 items
    assert agreement["agreement"] > 0.8  # the four first codes are the four communities
    assert result.report.embedding_coverage["fallback_items"] == 0


def test_fitting_on_learned_rows_gives_them_the_whole_codebook() -> None:
    sequences, ids = _communities(groups=4, per_group=30, users=600)
    ids = ids + [f"unseen{i}" for i in range(360)]  # three fallback items per learned one, as in retailrocket_cml
    embedded = item_embeddings(ids, kind="collaborative", sequences=sequences, dim=8)
    learned = ~embedded.fallback_mask
    assert learned.sum() == 120
    results = {fit_on: build_semantic_ids(ids, embeddings=embedded, num_levels=2, codebook_size=8, balanced=True,
                                          sequences=sequences, fit_on=fit_on) for fit_on in ("all", "learned")}  # fmt: skip
    first = {fit_on: np.array([r.item_index[item][0] for item in ids])[learned] for fit_on, r in results.items()}
    assert len(set(first["learned"])) == 8 > len(set(first["all"]))  # fitted on learned rows: all codes used
    assert np.bincount(first["learned"]).max() == 15  # balanced over the 120 learned items
    assert results["learned"].parameters["fit_on"] == "learned"
    with pytest.raises(ValueError, match="needs ItemEmbeddings"):
        build_semantic_ids(ids, embeddings=embedded.vectors, fit_on="learned")
