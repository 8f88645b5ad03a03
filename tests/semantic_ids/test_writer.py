from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gamer_hf.modeling.tokenization_gamer import GamerTokenizerFast
from gamer_hf.semantic_ids.build import build_semantic_ids
from gamer_hf.semantic_ids.writer import REPORT_FILENAME, atomic_directory, save_semantic_ids

BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}


@pytest.fixture(scope="module")
def semantic_ids(blobs: np.ndarray, item_ids: list[str]):
    return build_semantic_ids(item_ids, embeddings=blobs, num_levels=2, codebook_size=8, seed=0)


def test_saved_tokenizer_round_trips_every_item(semantic_ids, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    save_semantic_ids(semantic_ids, out, behaviors=BEHAVIORS, metadata={"embedding": {"kind": "test"}})
    tokenizer = GamerTokenizerFast.from_pretrained(out)
    assert tokenizer.codebook_sizes == semantic_ids.codebook_sizes
    assert tokenizer.behaviors == BEHAVIORS
    items = list(semantic_ids.item_index)
    codes = [list(semantic_ids.item_index[item]) for item in items]
    assert tokenizer.decode_items(codes, token_ids=False) == items
    token_rows = [tokenizer.encode_interactions([("buy", item)])[1:] for item in items]
    assert tokenizer.decode_items(token_rows) == items
    payload = json.loads((out / REPORT_FILENAME).read_text())
    assert payload["method"] == "rqkmeans"
    assert payload["report"]["codebook_sizes"] == semantic_ids.codebook_sizes
    assert payload["embedding"] == {"kind": "test"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_refuses_non_empty_dir_unless_overwrite(semantic_ids, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        save_semantic_ids(semantic_ids, out, behaviors=BEHAVIORS)
    assert (out / "keep.txt").exists()
    save_semantic_ids(semantic_ids, out, behaviors=BEHAVIORS, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / REPORT_FILENAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_empty_existing_dir_is_filled(semantic_ids, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    out.mkdir()
    save_semantic_ids(semantic_ids, out, behaviors=BEHAVIORS)
    assert (out / REPORT_FILENAME).exists()


def test_failure_inside_atomic_directory_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "tok"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(out) as tmp:
            (tmp / "partial.json").write_text("{}")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        with atomic_directory(target):
            pass
