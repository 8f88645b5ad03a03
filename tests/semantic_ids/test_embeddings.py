from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gamer_hf.semantic_ids.embeddings import item_embeddings, resolve_embedding_kind
from gamer_hf.semantic_ids.fallback import fill_missing_rows
from gamer_hf.semantic_ids.item2vec import Item2VecConfig

SEQUENCES = [["a", "b", "c"], ["b", "c", "a"], ["d", "e"], ["e", "d", "a"]]
IDS = ["a", "b", "c", "d", "e", "cold"]  # "cold" never occurs in the sequences


@pytest.mark.parametrize(
    "kind,has_items,has_sequences,expected",
    [
        ("auto", True, True, "hybrid"),
        ("auto", True, False, "text"),
        ("auto", False, True, "collaborative"),
        ("collaborative", True, True, "collaborative"),
        ("text", True, False, "text"),
    ],
)
def test_resolve_embedding_kind(kind: str, has_items: bool, has_sequences: bool, expected: str) -> None:
    assert resolve_embedding_kind(kind, has_items=has_items, has_sequences=has_sequences) == expected


@pytest.mark.parametrize(
    "kind,has_items,has_sequences,message",
    [
        ("auto", False, False, "needs an items table or"),
        ("text", False, True, "needs an items table"),
        ("hybrid", True, False, "needs interaction sequences"),
        ("word2vec", True, True, "unknown embedding kind"),
    ],
)
def test_resolve_embedding_kind_errors(kind: str, has_items: bool, has_sequences: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_embedding_kind(kind, has_items=has_items, has_sequences=has_sequences)


def test_fill_missing_rows_gives_distinct_random_rows_of_typical_norm() -> None:
    vectors = np.zeros((5, 8), dtype=np.float32)
    vectors[:2] = 3.0 / np.sqrt(8)  # norm 3
    missing = np.array([False, False, True, True, True])
    filled = fill_missing_rows(vectors, missing, seed=0)
    np.testing.assert_array_equal(filled[:2], vectors[:2])
    np.testing.assert_allclose(np.linalg.norm(filled[2:], axis=1), 3.0, rtol=1e-5)
    assert len(np.unique(filled[2:], axis=0)) == 3
    np.testing.assert_array_equal(filled, fill_missing_rows(vectors, missing, seed=0))


def test_collaborative_kind_fills_items_without_signal() -> None:
    result = item_embeddings(IDS, kind="collaborative", sequences=SEQUENCES, dim=3)
    assert result.kind == "collaborative" and result.item_ids == IDS
    assert result.vectors.shape == (6, 3)
    assert result.fallback_items == {"collaborative": 1}
    assert np.linalg.norm(result.vectors[-1]) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["ppmi", "item2vec"])
def test_training_items_fall_back_only_when_alone(data_dir, method: str) -> None:
    """On 400 real retail_beh_mbht users: every training item beside another item gets a learned row
    with item2vec; the fallback rows of training items are the items alone in all their sequences,
    which the coverage counts apart from the items never seen."""
    from gamer_hf.semantic_ids.collaborative import sequences_from_events

    events = pd.read_csv(data_dir / "retail_beh_mbht" / "events.csv.gz", nrows=6000, dtype={"user_id": str, "item_id": str})
    users = events["user_id"].unique()
    train = events[events["user_id"].isin(users[:400])]
    catalogue = sorted(events["item_id"].unique())  # also items of other users: never seen in training
    result = item_embeddings(catalogue, kind="collaborative", sequences=sequences_from_events(train),
                             collaborative=method, dim=16, item2vec=Item2VecConfig(epochs=2))
    coverage = result.coverage()
    assert coverage["seen_in_training"] == train["item_id"].nunique()
    assert coverage["unseen_in_training"] == len(catalogue) - train["item_id"].nunique() > 0
    assert coverage["seen_alone"] > 0
    assert coverage["fallback_seen_alone"] == coverage["seen_alone"]  # no co-occurrence, nothing to learn from
    assert coverage["fallback_seen_items"] == coverage["fallback_seen_alone"] + coverage["fallback_seen_with_partner"]
    if method == "item2vec":
        assert coverage["fallback_seen_with_partner"] == 0
    unseen = ~result.seen_in_training
    assert result.fallback_mask[unseen].all() and not result.alone_in_training[unseen].any()


def test_hybrid_concatenates_weighted_parts() -> None:
    titles = ["red shoe", "red boot", "red sock", "hat", "cap"]
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "title": titles})
    result = item_embeddings(IDS, sequences=SEQUENCES, items=items, dim=3, hybrid_weight=0.25)
    assert result.kind == "hybrid"
    assert result.vectors.shape == (6, 3 + 3)  # the 384-d text part is PCA-reduced to dim
    assert result.fallback_items == {"text": 1, "collaborative": 1}
    text_norm = np.linalg.norm(result.vectors[:5, :3], axis=1)
    collab_norm = np.linalg.norm(result.vectors[:5, 3:], axis=1)
    np.testing.assert_allclose(text_norm, np.sqrt(0.25), rtol=1e-4)
    np.testing.assert_allclose(collab_norm, np.sqrt(0.75), rtol=1e-4)


def test_item_embeddings_rejects_bad_weight() -> None:
    with pytest.raises(ValueError, match="hybrid_weight"):
        item_embeddings(IDS, kind="collaborative", sequences=SEQUENCES, hybrid_weight=1.0)


@pytest.mark.parametrize("pca_sample", [None, 3])  # None: every row fits the PCA; 3: past the sample size
def test_text_part_embeds_distinct_texts_once_and_expands_after_the_pca(monkeypatch, pca_sample) -> None:
    from gamer_hf.semantic_ids import embeddings

    if pca_sample:
        monkeypatch.setattr(embeddings, "PCA_SAMPLE", pca_sample)
    titles = ["red shoe", "red boot", "red shoe", "hat", "red boot", "cap"]
    items = pd.DataFrame({"item_id": list("abcdef"), "title": titles})
    result = item_embeddings(list("abcdefg"), kind="text", items=items, dim=3)
    assert result.vectors.shape == (7, 3) and result.fallback_items == {"text": 1}
    np.testing.assert_allclose(result.vectors[[0, 1]], result.vectors[[2, 4]], atol=1e-6)  # same text, same row
    np.testing.assert_allclose(np.linalg.norm(result.vectors[:6], axis=1), 1.0, rtol=1e-5)
    assert len(np.unique(result.vectors[:6].round(4), axis=0)) == 4
