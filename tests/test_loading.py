"""`gamer_hf.loading` helpers that need no checkpoint."""

from __future__ import annotations

import pytest

from gamer_hf.loading import unknown_interactions
from gamer_hf.modeling import GamerTokenizerFast


@pytest.fixture(scope="module")
def tokenizer() -> GamerTokenizerFast:
    index = {f"sku{i}": (i % 4, i // 4) for i in range(12)} | {"7": (3, 3)}
    return GamerTokenizerFast.from_items(index, behaviors={"click": 0, "buy": 1}, codebook_size=4)


@pytest.mark.parametrize("history,unknown", [
    ([("click", "sku1"), ("buy", "sku11")], []),
    ([("click", "sku1"), ("click", "nope"), ("fav", "sku2"), ("buy", "sku12")],
     [("click", "nope"), ("fav", "sku2"), ("buy", "sku12")]),
    ([("click", 7), ("click", "7"), ("buy", 8)], [("buy", 8)]),  # ids are looked up as str
    ([], []),
])
def test_unknown_interactions_names_the_pairs_the_tokenizer_cannot_encode(tokenizer, history, unknown) -> None:
    assert unknown_interactions(tokenizer, history) == unknown
