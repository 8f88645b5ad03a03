"""Out-of-core preparation (DuckDB): the same prepared folder as the in-memory engine, from chunks and shards."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gamer_hf.cli import main
from gamer_hf.data import DataValidationError, PreparedData, generate_synthetic, load_prepared, prepare, write_synthetic
from gamer_hf.data import outofcore
from gamer_hf.data.outofcore import prepare_out_of_core
from gamer_hf.data.prepare import choose_engine
from gamer_hf.errors import ConfigurationError

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def synthetic_events() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_synthetic(num_users=120, num_items=90, seed=3)


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory, synthetic_events) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("raw") / "synthetic", *synthetic_events)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many chunks and many blocks on a small log, so that merging across them is what is tested."""
    monkeypatch.setattr(outofcore, "CHUNK_BYTES", 8 << 10)


def assert_same_preparation(memory: PreparedData, duck: PreparedData, *, source_differs: bool = False) -> None:
    for name in SPLITS:
        assert duck.splits[name].features == memory.splits[name].features
        assert duck.splits[name].to_dict() == memory.splits[name].to_dict(), name
    expected, got = dict(memory.metadata), dict(duck.metadata)
    if source_differs:
        expected.pop("source"), got.pop("source")
        for record in expected["drop_report"] + got["drop_report"]:
            record.pop("file")
    assert got == expected
    assert (duck.item_ids, duck.user_ids) == (memory.item_ids, memory.user_ids)
    assert (duck.items is None) == (memory.items is None)
    if memory.items is not None:
        pd.testing.assert_frame_equal(duck.items, memory.items)


@pytest.mark.parametrize("options", [
    {},
    {"augment_copies": 2, "max_history": 6, "seed": 7},
    {"protocol": "loo", "k_core": 3},
    {"min_user_events": 25, "session_by": "day"},
], ids=["session", "augmented", "loo-kcore", "min-events-day"])
def test_the_same_splits_and_metadata_as_in_memory(tmp_path: Path, synthetic_folder: Path, small_chunks: None,
                                                   options: dict) -> None:
    memory = prepare(synthetic_folder, out=tmp_path / "memory", engine="memory", progress=False, **options)
    duck = prepare_out_of_core(synthetic_folder, tmp_path / "duck", progress=False, block_events=97, **options)
    assert_same_preparation(memory, duck)
    assert duck.splits["train"].cache_files  # memory-mapped from the prepared folder


def test_drops_are_counted_alike_across_chunks(tmp_path: Path, synthetic_events, small_chunks: None) -> None:
    events = synthetic_events[0].copy()
    events.loc[5, "behavior"] = "wishlist"  # unknown behavior
    events.loc[900, "user_id"] = " " + events.loc[900, "user_id"] + " "  # stripped, counted
    events.loc[2500, "timestamp"] = 99  # impossible for unix seconds
    events = pd.concat([events, events.iloc[[10, 3000]]])  # two duplicates, far apart
    path = tmp_path / "events.csv.gz"
    events.to_csv(path, index=False)
    options = {"behaviors": "click:0,cart:1,buy:2", "on_invalid": "drop", "progress": False}
    memory = prepare(path, out=tmp_path / "memory", engine="memory", **options)
    duck = prepare(path, out=tmp_path / "duck", engine="duckdb", **options)
    assert_same_preparation(memory, duck)
    reasons = [record["reason"] for record in duck.metadata["drop_report"]]
    assert any("duplicate" in reason for reason in reasons) and len(reasons) >= 4


def test_a_detected_unit_parses_the_file_once(tmp_path: Path, synthetic_events, small_chunks: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit detection needs every chunk before the first check: the checking pass reads the chunks it kept."""
    events = synthetic_events[0]
    path = tmp_path / "events.csv.gz"
    events.to_csv(path, index=False)
    parsed = []

    def counting(*args, **kwargs):
        for file, row, table in outofcore_chunks(*args, **kwargs):
            parsed.append(table.num_rows)
            yield file, row, table

    outofcore_chunks = outofcore.iter_table_chunks
    monkeypatch.setattr(outofcore, "iter_table_chunks", counting)
    options = {"behaviors": "click:0,cart:1,buy:2", "progress": False}
    duck = prepare(path, out=tmp_path / "duck", engine="duckdb", **options)
    assert len(parsed) > 3 and sum(parsed) == len(events)  # many chunks, each parsed once
    assert duck.metadata["timestamps"] == {"unit": "s", "detected": True}
    assert_same_preparation(prepare(path, out=tmp_path / "memory", engine="memory", **options), duck)


def test_read_blocks_are_joined_within_one_file(tmp_path: Path, synthetic_events, monkeypatch) -> None:
    """Chunks join up to BLOCKS_PER_CHUNK read blocks of one file, first rows kept (so the readahead stays small)."""
    events = synthetic_events[0]
    for i, part in enumerate((events.iloc[:2700], events.iloc[2700:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"part-{i}.parquet")
    monkeypatch.setattr(outofcore, "CHUNK_BYTES", 8 * 64 * 300)  # blocks of 300 rows (a Parquet row counts 64 bytes)
    chunks = list(outofcore._Source(tmp_path, None).tables())
    assert [(Path(f).name, row, t.num_rows) for f, row, t in chunks] == [
        ("part-0.parquet", 0, 2400), ("part-0.parquet", 2400, 300), ("part-1.parquet", 0, len(events) - 2700)]
    assert pa.concat_tables(t for _, _, t in chunks).to_pandas().equals(events.reset_index(drop=True))


def test_a_folder_of_parquet_shards(tmp_path: Path, synthetic_events) -> None:
    events = synthetic_events[0]
    shards = tmp_path / "export"
    for number, part in enumerate((events.iloc[:1000], events.iloc[1000:2200], events.iloc[2200:])):
        (shards / f"day={number}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), shards / f"day={number}" / "part-0.parquet")
    assert choose_engine("auto", shards, "auto", tmp_path / "out") == "duckdb"
    options = {"behaviors": "click:0,cart:1,buy:2", "progress": False}
    duck = prepare(shards, out=tmp_path / "duck", **options)
    memory = prepare(events, out=tmp_path / "memory", engine="memory", **options)
    assert_same_preparation(memory, duck, source_differs=True)
    assert duck.metadata["source"] == str(shards)


def test_a_bad_row_is_named_by_its_shard_row_and_value(tmp_path: Path, synthetic_events,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    events = synthetic_events[0]
    shards = tmp_path / "export"
    shards.mkdir()
    bad = events.iloc[1000:2000].copy()
    bad.iloc[417, bad.columns.get_loc("behavior")] = "wishlist"
    pq.write_table(pa.Table.from_pandas(events.iloc[:1000], preserve_index=False), shards / "a.parquet")
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), shards / "b.parquet")
    with pytest.raises(DataValidationError) as caught:
        prepare(shards, out=tmp_path / "out", behaviors="click:0,cart:1,buy:2", progress=False)
    message = str(caught.value)
    assert f"file {shards / 'b.parquet'}" in message and "row 417" in message and "'wishlist'" in message
    assert "column 'behavior'" in message
    assert list(tmp_path.iterdir()) == [shards]  # no output, no staging left
    argv = ["prepare", "--events", str(shards), "--behaviors", "click:0,cart:1,buy:2", "--out", str(tmp_path / "o"),
            "--engine", "duckdb", "--no_progress"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert str(shards / "b.parquet") in error and "row 417" in error and "'wishlist'" in error
    assert main(argv + ["--on_invalid", "drop"]) == 0
    assert "dropped 1 (behavior not in the level table" in capsys.readouterr().out


def test_a_failure_leaves_the_previous_output(tmp_path: Path, synthetic_folder: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "prepared"
    before = prepare(synthetic_folder, out=out, engine="duckdb", max_history=5, progress=False)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(outofcore, "build_splits", broken)
    with pytest.raises(OSError, match="disk full"):
        prepare(synthetic_folder, out=out, engine="duckdb", max_history=9, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # staging and spill files gone
    assert load_prepared(out).metadata == before.metadata


def test_the_real_dataset_prepares_alike(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = data_dir / "ecomm_dyhatr"  # real events with an item catalogue beside them
    monkeypatch.setattr(outofcore, "CHUNK_BYTES", 1 << 20)
    options = {"on_duplicate": "drop", "progress": False}  # the log repeats identical rows: dropped, counted
    memory = prepare(folder, out=tmp_path / "memory", engine="memory", **options)
    duck = prepare_out_of_core(folder, tmp_path / "duck", block_events=20_000, **options)
    assert_same_preparation(memory, duck)
    assert memory.metadata["num_events"] > 10_000 and memory.items is not None


def test_gzip_csv_without_header_in_chunks(tmp_path: Path, synthetic_events, small_chunks: None) -> None:
    events = synthetic_events[0].rename(columns={"behavior": "behavior_type"})
    events = events.replace({"behavior_type": {"click": "pv"}}).assign(category_id="c1")
    path = tmp_path / "UserBehavior.csv.gz"
    with gzip.open(path, "wt") as handle:
        events[["user_id", "item_id", "category_id", "behavior_type", "timestamp"]].to_csv(handle, index=False,
                                                                                          header=False)
    memory = prepare(path, out=tmp_path / "memory", engine="memory", progress=False)
    duck = prepare(path, out=tmp_path / "duck", engine="duckdb", progress=False)
    assert duck.metadata["format"] == "taobao"
    assert_same_preparation(memory, duck)


def test_auto_takes_duckdb_for_large_files_only_where_it_can(tmp_path: Path, synthetic_folder: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_module = sys.modules[choose_engine.__module__]  # the module, not the function of the same name
    out = tmp_path / "out"
    events_file = synthetic_folder / "events.csv.gz"
    inter = tmp_path / "log.inter"
    inter.write_text("user_id:token\titem_id:token\tbehavior:token\n" + "u\ti\tclick\n" * 200)
    monkeypatch.setattr(prepare_module, "OUT_OF_CORE_BYTES", 1024)
    assert choose_engine("auto", synthetic_folder, "auto", out) == "duckdb"  # a gamer folder over the size
    assert choose_engine("auto", synthetic_folder, "auto", None) == "memory"  # nowhere to spill
    assert choose_engine("auto", inter, "auto", out) == "memory"  # recbole is read in memory only
    assert choose_engine("auto", pd.DataFrame(), "auto", out) == "memory"
    monkeypatch.setattr(prepare_module, "OUT_OF_CORE_BYTES", events_file.stat().st_size + 1)
    assert choose_engine("auto", events_file, "gamer", out) == "memory"
    with pytest.raises(ConfigurationError, match="out="):
        prepare(synthetic_folder, engine="duckdb", progress=False)
    with pytest.raises(ConfigurationError, match="engine must be"):
        prepare(synthetic_folder, engine="spark", progress=False)


def test_a_bad_memory_limit_is_one_line_before_any_reading(tmp_path: Path, synthetic_folder: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def no_reading(*args, **kwargs):
        raise AssertionError("the log was read before memory_limit was checked")

    monkeypatch.setattr(outofcore, "_read_validated", no_reading)
    with pytest.raises(ConfigurationError, match=r"memory_limit='lots': .*number"):
        prepare(synthetic_folder, out=tmp_path / "out", engine="duckdb", memory_limit="lots", progress=False)
    argv = ["prepare", "--events", str(synthetic_folder), "--out", str(tmp_path / "o"), "--engine", "duckdb",
            "--memory_limit", "lots", "--no_progress"]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
