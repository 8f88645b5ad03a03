"""Every input container and every format adapter yields the same canonical events table."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import datasets
import pandas as pd
import pytest

from gamer_hf.data import BehaviorTable, detect_format, read_events

CANONICAL = pd.DataFrame({
    "user_id": ["7", "7", "007", "7"],
    "item_id": ["10", "11", "10", "10"],
    "behavior": ["click", "cart", "click", "buy"],
    "timestamp": [100, 200, 50, 300],
})  # fmt: skip


def _expected_rows() -> list[tuple]:
    # users in order of first appearance, then time; "007" keeps its leading zeros
    return [("7", "10", "click", 100.0), ("7", "11", "cart", 200.0), ("7", "10", "buy", 300.0),
            ("007", "10", "click", 50.0)]  # fmt: skip


def _rows(log) -> list[tuple]:
    table = log.events
    return list(zip(table["user_id"], table["item_id"], table["behavior"], table["timestamp"]))


def _csv(path: Path) -> Path:
    CANONICAL.to_csv(path, index=False)
    return path


def _csv_bom(path: Path) -> Path:
    CANONICAL.to_csv(path, index=False, encoding="utf-8-sig")  # as spreadsheet programs write it
    return path


def _csv_gz(path: Path) -> Path:
    CANONICAL.to_csv(path, index=False, compression="gzip")
    return path


def _parquet(path: Path) -> Path:
    CANONICAL.to_parquet(path, index=False)
    return path


def _jsonl(path: Path) -> Path:
    CANONICAL.to_json(path, orient="records", lines=True)
    return path


WRITERS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "csv": ("events.csv", _csv),
    "csv with BOM": ("events.csv", _csv_bom),
    "csv.gz": ("events.csv.gz", _csv_gz),
    "parquet": ("events.parquet", _parquet),
    "jsonl": ("events.jsonl", _jsonl),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_files_of_every_container_read_alike(tmp_path: Path, kind: str, levels: dict[str, int]) -> None:
    name, write = WRITERS[kind]
    log = read_events(write(tmp_path / name), behaviors=levels)
    assert log.format == "events"
    assert _rows(log) == _expected_rows()
    assert log.events.features["user_id"].dtype == "string"


@pytest.mark.parametrize("container", ["dataframe", "dataset"])
def test_in_memory_tables_read_alike(container: str, levels: dict[str, int]) -> None:
    source = CANONICAL if container == "dataframe" else datasets.Dataset.from_pandas(CANONICAL)
    assert _rows(read_events(source, behaviors=levels)) == _expected_rows()


def test_integer_ids_become_strings(levels: dict[str, int]) -> None:
    frame = pd.DataFrame({"user_id": [1, 1], "item_id": [5.0, None], "behavior": ["click", "buy"], "timestamp": [1, 2]})
    log = read_events(frame, behaviors=levels, on_invalid="drop")
    assert log.events["item_id"] == ["5"]
    assert log.report.records[0].reason == "null or empty item_id"


def test_column_mapping_and_timestamp_unit(levels: dict[str, int]) -> None:
    frame = CANONICAL.rename(columns={"user_id": "visitor", "timestamp": "ts_ms"})
    frame["ts_ms"] *= 1000
    log = read_events(frame, "events", levels, columns={"user_id": "visitor", "timestamp": "ts_ms"},
                      timestamp_unit="relative_ms")
    assert _rows(log) == _expected_rows()
    with pytest.warns(FutureWarning, match="timestamp_unit="):  # the old keyword still works
        old = read_events(frame, "events", levels, columns={"user_id": "visitor", "timestamp": "ts_ms"},
                          time_unit="relative_ms")
    assert _rows(old) == _expected_rows()


def test_datetime_strings_are_utc_seconds(levels: dict[str, int]) -> None:
    frame = CANONICAL.assign(timestamp=["2024-01-01 00:01:40", "2024-01-01 00:03:20", "2024-01-01 00:00:50",
                                        "2024-01-01 00:05:00"])  # fmt: skip
    log = read_events(frame, behaviors=levels)
    base = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert [t - base for t in log.events["timestamp"]] == [100, 200, 300, 50]


def test_without_timestamps_order_defines_time(levels: dict[str, int]) -> None:
    log = read_events(CANONICAL.drop(columns="timestamp"), behaviors=levels)
    assert log.time_resolution == "order"
    assert log.events["timestamp"] == [0.0, 1.0, 2.0, 0.0]
    assert log.events["behavior"] == ["click", "cart", "buy", "click"]  # file order, not time


def test_retailrocket(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("timestamp,visitorid,event,itemid,transactionid\n"
                    "1433221332117,257597,view,355908,\n"
                    "1433224214164,257597,addtocart,248676,\n"
                    "1433221999827,111016,view,318965,\n"
                    "1433225000000,257597,transaction,248676,4000\n")  # fmt: skip
    assert detect_format(path) == "retailrocket"
    log = read_events(path)
    assert log.behaviors == BehaviorTable({"view": 0, "cart": 1, "buy": 2})
    assert _rows(log) == [("257597", "355908", "view", 1433221332.117), ("257597", "248676", "cart", 1433224214.164),
                          ("257597", "248676", "buy", 1433225000.0), ("111016", "318965", "view", 1433221999.827)]


def test_taobao_user_behavior(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2268318,2520377,pv,1511544070\n1,2333346,2520771,fav,1511561733\n"
                    "2,2268318,2520377,buy,1511572885\n1,2333346,2520771,cart,1511561700\n")  # fmt: skip
    assert detect_format(path) == "taobao"
    log = read_events(path)
    assert log.behaviors.levels == {"pv": 0, "fav": 1, "cart": 1, "buy": 2}
    assert _rows(log)[:3] == [("1", "2268318", "pv", 1511544070.0), ("1", "2333346", "cart", 1511561700.0),
                              ("1", "2333346", "fav", 1511561733.0)]
    assert log.items.set_index("item_id")["category_id"].to_dict() == {"2268318": "2520377", "2333346": "2520771"}


def test_tmall_user_log(tmp_path: Path) -> None:
    path = tmp_path / "user_log_format1.csv"
    path.write_text("user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"
                    "328862,323294,833,2882,2661,829,0\n328862,844400,1271,2882,2661,511,3\n"
                    "328862,323294,833,2882,2661,1111,2\n234512,575153,1271,2882,2661,1110,1\n")  # fmt: skip
    assert detect_format(path) == "tmall"
    log = read_events(path)
    assert log.time_resolution == "day"
    day = pd.Timestamp
    assert _rows(log) == [
        ("328862", "844400", "fav", day("2014-05-11", tz="UTC").timestamp()),
        ("328862", "323294", "click", day("2014-08-29", tz="UTC").timestamp()),
        ("328862", "323294", "buy", day("2014-11-11", tz="UTC").timestamp()),
        ("234512", "575153", "cart", day("2014-11-10", tz="UTC").timestamp()),
    ]
    assert set(log.items.columns) == {"item_id", "cat_id", "seller_id", "brand_id"}


def test_recbole_atomic_inter(tmp_path: Path, levels: dict[str, int]) -> None:
    path = tmp_path / "retail.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\tbehavior:token\n"
                    "1\t10\t5.0\tclick\n1\t10\t6.0\tbuy\n2\t11\t1.5\tcart\n")  # fmt: skip
    assert detect_format(path) == "recbole"
    log = read_events(path, behaviors=levels)
    assert _rows(log) == [("1", "10", "click", 5.0), ("1", "10", "buy", 6.0), ("2", "11", "cart", 1.5)]


def _write_gamer_json(folder: Path, variant: str, with_time: bool) -> None:
    files = {
        f"Tiny.{variant}.inter.json": {"u1": [3, 4, 3], "u2": [5, 6]},
        f"Tiny.{variant}.behavior.json": {"u1": ["click", "cart", "buy"], "u2": ["click", "click"]},
        "Tiny.behavior_level.json": {"click": 0, "cart": 1, "buy": 2},
        "Tiny.index.json": {"3": ["<a_1>", "<b_2>"], "4": ["<a_1>", "<b_3>"], "5": ["<a_0>", "<b_0>"],
                            "6": ["<a_2>", "<b_1>"]},
    }  # fmt: skip
    if variant == "SMB":
        files["Tiny.SMB.session.json"] = {"u1": [10, 10, 11], "u2": [7, 8]}
    if with_time:
        files[f"Tiny.{variant}.time.json"] = {
            "u1": ["2026-01-01 00:00:00", "2026-01-01 00:30:00", "2026-01-02 00:00:00"],
            "u2": ["2026-01-01 00:00:00", "2026-01-03 00:00:00"],
        }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))


@pytest.mark.parametrize(("variant", "with_time"), [("SMB", True), ("SMB", False), ("MB", False)])
def test_gamer_json_layout(tmp_path: Path, variant: str, with_time: bool) -> None:
    _write_gamer_json(tmp_path, variant, with_time)
    assert detect_format(tmp_path) == "gamer_json"
    log = read_events(tmp_path)
    assert log.events["user_id"] == ["u1", "u1", "u1", "u2", "u2"]
    assert log.events["item_id"] == ["3", "4", "3", "5", "6"]
    assert log.events["behavior"] == ["click", "cart", "buy", "click", "click"]
    assert log.has_sessions == (variant == "SMB")
    if variant == "SMB":
        assert log.events["session_id"] == ["10", "10", "11", "7", "8"]
    assert log.time_resolution == ("seconds" if with_time else "order")
    assert log.item_index["4"] == ("<a_1>", "<b_3>")


def test_gamer_json_lengths_must_match(tmp_path: Path) -> None:
    _write_gamer_json(tmp_path, "SMB", False)
    (tmp_path / "Tiny.SMB.session.json").write_text(json.dumps({"u1": [10, 10], "u2": [7, 8]}))
    with pytest.raises(ValueError, match=r"session list length 2 differs from the 3 items of user 'u1'.*session.json"):
        read_events(tmp_path)


def _write_gamer_folder(folder: Path, with_meta: bool) -> None:
    folder.mkdir()
    with gzip.open(folder / "events.csv.gz", "wt") as handle:
        handle.write("user_id,item_id,behavior,timestamp\n1,9,fav,10\n1,8,buy,20\n2,9,view,5\n")
    if with_meta:
        (folder / "meta.json").write_text(json.dumps({"timestamps": "unix seconds",
                                                      "stats": {"behavior_order_low_to_high": ["view", "fav", "buy"]}}))
    else:
        (folder.parent / "README.md").write_text(
            "| folder | behaviors, low to high |\n|---|---|\n| shop | view 1 < fav 1 < buy 1 |\n")


@pytest.mark.parametrize("with_meta", [True, False])
def test_gamer_folder_levels_from_meta_or_readme(tmp_path: Path, with_meta: bool) -> None:
    folder = tmp_path / "shop"
    _write_gamer_folder(folder, with_meta)
    assert detect_format(folder) == "gamer"
    log = read_events(folder, format="gamer")
    assert log.behaviors.levels == {"view": 0, "fav": 1, "buy": 2}
    assert _rows(log) == [("1", "9", "fav", 10.0), ("1", "8", "buy", 20.0), ("2", "9", "view", 5.0)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("click:0,cart:1,buy:2", {"click": 0, "cart": 1, "buy": 2}),
        ("pv<fav=cart<buy", {"pv": 0, "fav": 1, "cart": 1, "buy": 2}),
        ("view,buy", {"view": 0, "buy": 1}),
        (["a", "b"], {"a": 0, "b": 1}),
    ],
)
def test_behavior_specs(spec, expected: dict[str, int]) -> None:
    table = BehaviorTable.parse(spec)
    assert table.levels == expected and list(table.levels) == list(expected)


def test_behavior_table_target_and_ranks() -> None:
    table = BehaviorTable.parse("pv<fav=cart<buy")
    assert table.target == "buy"
    assert [table.hierarchy_rank(b) for b in table.names] == [1, 2, 2, 3]
    with pytest.raises(ValueError, match="share the top level"):
        BehaviorTable({"click": 0, "cart": 1, "buy": 1}).target
    with pytest.raises(ValueError, match="expected name:level"):
        BehaviorTable.parse("click:x")


def test_unknown_format_is_named(levels: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="unknown format 'csvv'"):
        read_events(CANONICAL, "csvv", levels)
