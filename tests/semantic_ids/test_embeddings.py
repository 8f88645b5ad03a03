from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gamer_hf.semantic_ids.embeddings import item_embeddings, resolve_embedding_kind
from gamer_hf.semantic_ids.fallback import fill_missing_rows

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
