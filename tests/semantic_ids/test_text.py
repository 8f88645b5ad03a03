from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from gamer_hf.semantic_ids.text import text_embeddings, texts_from_items


def test_texts_from_items_renders_each_column_kind() -> None:
    items = pd.DataFrame(
        {
            "item_id": [10, 11, 12, 13],
            "title": ["red shoes", None, "blue hat", "green scarf"],
            "brand_id": [7, 7, 3, 3],
            "price": [1.0, 2.0, 3.0, np.nan],
        }
    )
    texts = texts_from_items(items, price_buckets=3)
    assert list(texts.index) == ["10", "11", "12", "13"]
    assert texts["10"] == "red shoes, brand id 7, price bucket 0"
    assert texts["11"] == "brand id 7, price bucket 1"  # missing title omitted
    assert texts["13"] == "green scarf, brand id 3"  # missing price omitted


@pytest.mark.parametrize(
    "items,message",
    [
        (pd.DataFrame({"id": [1], "title": ["x"]}), "lacks the id column"),
        (pd.DataFrame({"item_id": [1, 1], "title": ["x", "y"]}), "duplicate item_id"),
        (pd.DataFrame({"item_id": [1]}), "no side-information column"),
    ],
)
def test_texts_from_items_errors(items: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        texts_from_items(items)


def test_offline_model_puts_similar_titles_closer(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the bundled sentence-transformer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    titles = [
        "red running shoes for men",
        "mens red sneakers for running",
        "stainless steel kitchen knife",
        "mens red sneakers for running",
    ]
    vectors = text_embeddings(titles)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(vectors[1], vectors[3])  # duplicate text encoded once
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.3
