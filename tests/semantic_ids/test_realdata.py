"""retailrocket_cml (30k items): CID and collaborative RQ-KMeans codes are unique and survive the tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gamer_hf.modeling.tokenization_gamer import GamerTokenizerFast
from gamer_hf.semantic_ids import build_semantic_ids, item_embeddings, load_inputs, save_semantic_ids

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def retailrocket(data_dir: Path):
    return load_inputs(data_dir / "retailrocket_cml")


def _assert_round_trip(semantic_ids, inputs, out: Path) -> None:
    save_semantic_ids(semantic_ids, out, behaviors=inputs.behaviors)
    tokenizer = GamerTokenizerFast.from_pretrained(out)
    assert tokenizer.item_index == semantic_ids.item_index
    items = inputs.item_ids
    tokens = [tokenizer.item_token_ids(item) for item in items]
    assert tokenizer.decode_items(torch.tensor(tokens)) == items
    history = tokenizer.encode_interactions([("click", items[0]), ("buy", items[-1])])
    assert tokenizer.decode_items([history[1 : 1 + tokenizer.num_levels]]) == [items[0]]


def test_inputs_hold_out_published_test_events(retailrocket) -> None:
    assert len(retailrocket.item_ids) == 30113
    assert retailrocket.behaviors == {"click": 0, "cart": 1, "buy": 2}
    # 99,555 events, 2,174 of them the held-out test buys (test.csv.gz)
    assert sum(len(seq) for seq in retailrocket.sequences) == 99555 - 2174


def test_cid_is_collision_free_and_round_trips(retailrocket, tmp_path: Path) -> None:
    result = build_semantic_ids(retailrocket.item_ids, method="cid", codebook_size=64)
    assert result.report.collision_rate == 0.0 and result.codebook_sizes == [64, 64, 64]
    _assert_round_trip(result, retailrocket, tmp_path / "cid")


def test_collaborative_rqkmeans_is_collision_free_and_round_trips(retailrocket, tmp_path: Path) -> None:
    embedded = item_embeddings(retailrocket.item_ids, kind="collaborative", sequences=retailrocket.sequences, dim=32)
    assert embedded.fallback_items["collaborative"] < 0.05 * len(retailrocket.item_ids)
    result = build_semantic_ids(
        retailrocket.item_ids, method="rqkmeans", embeddings=embedded.vectors, num_levels=3, codebook_size=64
    )
    codes = np.array(list(result.item_index.values()))
    assert len(np.unique(codes, axis=0)) == len(codes)
    assert result.report.levels[0].usage == 1.0
    _assert_round_trip(result, retailrocket, tmp_path / "rq")
