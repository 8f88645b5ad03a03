from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gamer_hf.semantic_ids.inputs import load_inputs, read_items_table


def test_raw_folder_holds_out_test_events_but_keeps_their_items(events_folder: Path) -> None:
    inputs = load_inputs(events_folder)
    events = pd.read_csv(events_folder / "events.csv.gz", dtype={"item_id": str})
    test = pd.read_csv(events_folder / "test.csv.gz", dtype={"item_id": str})
    assert inputs.source == "raw" and inputs.items is None
    assert inputs.item_ids == sorted(events["item_id"].unique())
    assert sum(len(seq) for seq in inputs.sequences) == len(events) - len(test)
    only_in_test = set(test["item_id"]) - {item for seq in inputs.sequences for item in seq}
    assert only_in_test and only_in_test <= set(inputs.item_ids)
    assert inputs.behaviors == {"click": 0, "cart": 1, "buy": 2}


def test_behaviors_argument_overrides_meta(events_folder: Path) -> None:
    levels = {"click": 0, "cart": 1, "buy": 1}
    assert load_inputs(events_folder, behaviors=levels).behaviors == levels


@pytest.mark.parametrize("suffix", [".csv.gz", ".parquet"])
def test_items_file_override_reads_ids_as_strings(events_folder: Path, tmp_path: Path, suffix: str) -> None:
    table = pd.DataFrame({"item_id": [1, 2], "brand": ["a", "b"]})
    path = tmp_path / f"items{suffix}"
    table.to_parquet(path) if suffix == ".parquet" else table.to_csv(path, index=False)
    inputs = load_inputs(events_folder, items_file=path)
    assert inputs.items["item_id"].tolist() == ["1", "2"]


def _file(path: Path) -> Path:
    path.write_text("user_id,item_id,behavior,timestamp\n")
    return path


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda root: root / "missing", FileNotFoundError, "not found"),
        (lambda root: _file(root / "events.csv"), NotADirectoryError, "events.csv is a file: pass a prepared"),
        (lambda root: root, ValueError, "neither a prepared dataset"),
    ],
)
def test_unusable_data_paths(tmp_path: Path, make, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_inputs(make(tmp_path))


def test_items_table_without_id_column(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    pd.DataFrame({"sku": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lacks column 'item_id'"):
        read_items_table(path)
