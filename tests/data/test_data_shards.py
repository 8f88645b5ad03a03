"""The shard writer: the folder `save_to_disk` writes, block by block (load_from_disk reads it alike)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pytest

from gamer_hf.data import prepare
from gamer_hf.data.shards import DatasetDictWriter

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def real_splits(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> datasets.DatasetDict:
    """retailrocket_cml's first 400 users, prepared in memory (lists, strings, ints and floats in the splits)."""
    import pandas as pd

    events = pd.read_csv(data_dir / "retailrocket_cml" / "events.csv.gz", dtype={"user_id": str, "item_id": str})
    events = events[events["user_id"].isin(events["user_id"].unique()[:400])]
    return prepare(events, out=tmp_path_factory.mktemp("prep") / "p", engine="memory", max_history=20,
                   behaviors="click:0,cart:1,buy:2",
                   augment_copies=1, progress=False).splits


@pytest.mark.parametrize("max_shard_bytes", [None, 20_000], ids=["one-shard", "many-shards"])
def test_blocks_load_as_the_saved_dataset_dict(tmp_path: Path, real_splits: datasets.DatasetDict,
                                               max_shard_bytes: int | None) -> None:
    real_splits.save_to_disk(str(tmp_path / "saved"))
    writer = DatasetDictWriter(tmp_path / "written", list(SPLITS), max_shard_bytes)
    blocks = {name: real_splits[name].data.table for name in SPLITS}
    for start in range(0, max(len(t) for t in blocks.values()), 97):  # blocks as the engine appends them
        writer.write({name: table.slice(start, 97) for name, table in blocks.items()})
    writer.close()
    saved, written = (datasets.load_from_disk(str(tmp_path / name)) for name in ("saved", "written"))
    assert list(written) == list(saved)
    for name in SPLITS:
        assert written[name].features == saved[name].features
        assert written[name].data.table.equals(saved[name].data.table), name
        shards = sorted(p.name for p in (tmp_path / "written" / name).glob("*.arrow"))
        assert len(shards) == 1 if max_shard_bytes is None else len(shards) > 1
        state = {d: json.loads((tmp_path / d / name / "state.json").read_text()) for d in ("saved", "written")}
        assert [f["filename"] for f in state["written"].pop("_data_files")] == shards
        state["saved"].pop("_data_files")
        state["saved"].pop("_fingerprint"), state["written"].pop("_fingerprint")
        assert state["written"] == state["saved"]
        assert ((tmp_path / "written" / name / "dataset_info.json").read_text()
                == (tmp_path / "saved" / name / "dataset_info.json").read_text())
    assert ((tmp_path / "written" / "dataset_dict.json").read_text()
            == (tmp_path / "saved" / "dataset_dict.json").read_text())


def test_a_split_without_any_table_is_refused(tmp_path: Path) -> None:
    writer = DatasetDictWriter(tmp_path / "out", ["train"])
    with pytest.raises(ValueError, match="no table was written"):
        writer.close()


def test_later_tables_are_cast_to_the_first_schema(tmp_path: Path) -> None:
    writer = DatasetDictWriter(tmp_path / "out", ["train"])
    writer.write({"train": pa.table({"x": pa.array([1, 2], pa.int64())})})
    writer.write({"train": pa.table({"x": pa.array([3], pa.int32())})})
    writer.close()
    loaded = datasets.load_from_disk(str(tmp_path / "out"))["train"]
    assert loaded["x"] == [1, 2, 3] and loaded.features["x"].dtype == "int64"
