from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from gamer_hf import GamerTokenizerFast


@pytest.fixture()
def tok() -> GamerTokenizerFast:
    return GamerTokenizerFast.from_items(
        {"sku1": (3, 17, 5), "sku2": (3, 2, 9)}, behaviors={"click": 0, "cart": 1, "buy": 2}, codebook_size=32
    )


def test_encode_histories_left_pads_and_ends_with_requested_behavior(tok: GamerTokenizerFast) -> None:
    batch = tok.encode_histories([[("click", "sku1"), ("cart", "sku2")], [("buy", "sku2")]], behavior="buy", return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (2, 9)
    assert (ids[:, -1] == tok.behavior_token_id("buy")).all()
    assert mask[1].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert (ids[1, :4] == tok.pad_token_id).all()
    assert tok.convert_ids_to_tokens(ids[0].tolist())[:4] == ["<beh_click>", "<c1_3>", "<c2_17>", "<c3_5>"]
    assert tok.decode_items(ids[0:1, 1:4]) == ["sku1"]
    assert tok.decode_items([[3, 2, 9]], token_ids=False) == ["sku2"]
    assert tok.decode_items([[0, 0, 0]], token_ids=False) == [None]


def test_max_history_keeps_the_latest(tok: GamerTokenizerFast) -> None:
    batch = tok.encode_histories([[("click", "sku1"), ("cart", "sku2")]], behavior="buy", max_history=1)
    assert batch["input_ids"][0] == tok.encode_interactions([("cart", "sku2")]) + [tok.behavior_token_id("buy")]



def test_encode_histories_pads_each_row_by_its_own_length_and_behavior(tok: GamerTokenizerFast) -> None:
    """Rows with and without a requested behavior, an empty history and `max_history`: plain int lists without
    `return_tensors`, the same values as int64 tensors with it (the rows are filled as arrays)."""
    histories = [[("click", "sku1"), ("cart", "sku2")], [], [("buy", "sku2")], [("cart", "sku1")]]
    behaviors = ["buy", "cart", None, None]
    rows = [tok.encode_interactions(history[-1:]) for history in histories]
    rows = [row + ([tok.behavior_token_id(beh)] if beh else []) for row, beh in zip(rows, behaviors)]
    width = max(len(row) for row in rows)
    lists = tok.encode_histories(histories, behavior=behaviors, max_history=1)
    assert lists["input_ids"] == [[tok.pad_token_id] * (width - len(row)) + row for row in rows]
    assert lists["attention_mask"] == [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    assert all(type(value) is int for row in lists["input_ids"] for value in row)
    tensors = tok.encode_histories(histories, behavior=behaviors, max_history=1, return_tensors="pt")
    for name in ("input_ids", "attention_mask"):
        assert tensors[name].dtype == torch.long and tensors[name].tolist() == lists[name]
    assert tok.encode_histories([[], []])["input_ids"] == [[], []]

@pytest.mark.parametrize(("pair", "message"), [(("view", "sku1"), "unknown behavior 'view'"), (("click", "nope"), "unknown item 'nope'")])
def test_unknown_raises_or_skips(tok: GamerTokenizerFast, pair: tuple[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tok.encode_interactions([pair])
    assert tok.encode_interactions([pair, ("buy", "sku1")], on_unknown="skip") == tok.encode_interactions([("buy", "sku1")])


def test_code_token_mask(tok: GamerTokenizerFast) -> None:
    ids = torch.tensor(tok.encode_interactions([("click", "sku1")]) + [tok.pad_token_id])
    assert tok.code_token_mask(ids).tolist() == [False, True, True, True, False]


def test_round_trip_keeps_index_and_behavior_order(tok: GamerTokenizerFast, tmp_path: Path) -> None:
    reordered = GamerTokenizerFast.from_items(tok.item_index, behaviors={"cart": 1, "click": 0, "buy": 2}, codebook_size=[4, 32, 10])
    reordered.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, GamerTokenizerFast)
    assert list(loaded.behaviors.items()) == [("cart", 1), ("click", 0), ("buy", 2)]
    assert loaded.item_index == reordered.item_index
    assert loaded.codebook_sizes == [4, 32, 10]
    assert loaded.encode_interactions([("buy", "sku2")]) == reordered.encode_interactions([("buy", "sku2")])


@pytest.mark.parametrize(
    ("index", "kwargs", "message"),
    [
        ({"a": (1, 2), "b": (1, 2)}, {}, "same code tuple"),
        ({"a": (1, 2), "b": (1,)}, {}, "same length"),
        ({"a": (1, 40)}, {"codebook_size": 32}, "outside"),
    ],
)
def test_bad_item_index(index: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GamerTokenizerFast.from_items(index, behaviors={"click": 0, "buy": 1}, **kwargs)
