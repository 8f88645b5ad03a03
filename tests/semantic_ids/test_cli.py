from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gamer_hf.cli import main
from gamer_hf.modeling.tokenization_gamer import GamerTokenizerFast
from gamer_hf.semantic_ids.writer import REPORT_FILENAME


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["semantic-ids", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _all_events_items(folder: Path) -> list[str]:
    return sorted(pd.read_csv(folder / "events.csv.gz", dtype={"item_id": str})["item_id"].unique())


@pytest.mark.parametrize(
    "method,extra",
    [
        ("rqkmeans", ["--levels", "2", "--codebook_size", "8", "--balanced", "true"]),
        ("rqvae", ["--levels", "2", "--codebook_size", "8", "--rqvae_steps", "10", "--dim", "8"]),
        ("cid", ["--codebook_size", "4"]),
    ],
)
def test_raw_folder_to_tokenizer(
    capsys: pytest.CaptureFixture, events_folder: Path, tmp_path: Path, method: str, extra: list[str]
) -> None:
    out = tmp_path / "tok"
    code, stdout, _ = _run(capsys, "--data", str(events_folder), "--out", str(out), "--method", method, *extra)
    assert code == 0
    assert f"semantic IDs: {method}" in stdout and "level" in stdout
    tokenizer = GamerTokenizerFast.from_pretrained(out)
    items = _all_events_items(events_folder)
    assert sorted(tokenizer.item_index) == items
    assert len(set(tokenizer.item_index.values())) == len(items)
    assert tokenizer.behaviors == {"click": 0, "cart": 1, "buy": 2}
    payload = json.loads((out / REPORT_FILENAME).read_text())
    assert payload["method"] == method and payload["source"] == "raw"
    assert payload["report"]["collision_rate_after"] == 0.0
    assert ("embedding" in payload) == (method != "cid")


def test_text_embeddings_from_items_file(
    capsys: pytest.CaptureFixture, events_folder: Path, items_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tok"
    argv = ["--data", str(events_folder), "--out", str(out), "--items", str(items_file), "--embedding", "text"]
    code, stdout, _ = _run(capsys, *argv, "--levels", "2", "--codebook_size", "4")
    assert code == 0
    payload = json.loads((out / REPORT_FILENAME).read_text())
    assert payload["embedding"]["kind"] == "text" and payload["embedding"]["dim"] == 64  # PCA of the 384-d text vectors
    assert "text encoder: all-MiniLM-L6-v2" in stdout and payload["embedding"]["text_encoder"].startswith("all-MiniLM")
    # Items with identical side info (same category and price bucket) must still be told apart.
    codes = GamerTokenizerFast.from_pretrained(out).item_index.values()
    assert len(set(codes)) == len(_all_events_items(events_folder))


def test_existing_output_needs_overwrite(capsys: pytest.CaptureFixture, events_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    argv = ["--data", str(events_folder), "--out", str(out), "--method", "cid", "--codebook_size", "8"]
    assert _run(capsys, *argv)[0] == 0
    code, _, stderr = _run(capsys, *argv, "--seed", "1")
    assert code == 2 and "not empty" in stderr
    assert _run(capsys, *argv, "--seed", "1", "--overwrite", "true")[0] == 0
    assert json.loads((out / REPORT_FILENAME).read_text())["parameters"]["seed"] == 1


def test_missing_behavior_order_is_a_clear_error(
    capsys: pytest.CaptureFixture, events_folder: Path, tmp_path: Path
) -> None:
    (events_folder / "meta.json").write_text("{}")
    argv = ["--data", str(events_folder), "--out", str(tmp_path / "tok"), "--method", "cid"]
    code, _, stderr = _run(capsys, *argv)
    assert code == 2 and "--behaviors" in stderr
    assert _run(capsys, *argv, "--behaviors", "click<cart=buy")[0] == 0
    assert GamerTokenizerFast.from_pretrained(tmp_path / "tok").behaviors == {"click": 0, "cart": 1, "buy": 1}


def test_prepared_dataset_uses_only_training_sequences(
    capsys: pytest.CaptureFixture, events_folder: Path, tmp_path: Path
) -> None:
    from gamer_hf.data import prepare

    prepared = prepare(events_folder, protocol="loo", out=tmp_path / "prepared", max_history=20, progress=False)
    out = tmp_path / "tok"
    argv = ["--data", str(tmp_path / "prepared"), "--out", str(out), "--levels", "2", "--codebook_size", "8"]
    code, _, _ = _run(capsys, *argv, "--dim", "8")
    assert code == 0
    payload = json.loads((out / REPORT_FILENAME).read_text())
    assert payload["source"] == "prepared" and payload["embedding"]["kind"] == "collaborative"
    train_items = {item for row in prepared.splits["train"]["items"] for item in row}
    unseen = set(prepared.item_ids) - train_items
    assert unseen  # held-out items exist, and they still get codes below
    assert payload["embedding"]["fallback_items"]["collaborative"] >= len(unseen)
    assert sorted(GamerTokenizerFast.from_pretrained(out).item_index) == sorted(prepared.item_ids)


def test_item2vec_codes_report_coverage_and_neighbour_agreement(
    capsys: pytest.CaptureFixture, events_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tok"
    argv = ["--data", str(events_folder), "--out", str(out), "--levels", "2", "--codebook_size", "4",
            "--embedding", "collaborative", "--collaborative", "item2vec", "--dim", "8"]  # fmt: skip
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0 and "neighbour agreement" in stdout
    payload = json.loads((out / REPORT_FILENAME).read_text())
    assert payload["embedding"]["collaborative"] == "item2vec"
    coverage = payload["report"]["embedding_coverage"]
    assert coverage["items"] == len(_all_events_items(events_folder))
    assert coverage["unseen_in_training"] >= 1  # the held-out-only items of the fixture
    assert 0.0 <= payload["report"]["neighbour_agreement"]["agreement"] <= 1.0
    assert len(payload["report"]["collision_rate_per_level"]) == 2
