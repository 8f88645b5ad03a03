"""users.json / items.json are read only when PreparedData.user_ids / item_ids are used, then held as Arrow; it reads as the list it was.
items.parquet (the item side information) is read only when PreparedData.items is used."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from gamer_hf.data import generate_synthetic, load_prepared, prepare
from gamer_hf.data.id_lists import read_id_array
from gamer_hf.data.prepare import LazyIds, _write_id_list
from gamer_hf.errors import DataError


@pytest.fixture(scope="module")
def prepared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events, _ = generate_synthetic(num_users=90, num_items=60, seed=5)
    out = tmp_path_factory.mktemp("lazy") / "prepared"
    prepare(events, behaviors={"click": 0, "cart": 1, "buy": 2}, out=out, max_history=10, progress=False)
    return out


def test_user_ids_are_read_on_first_use_and_equal_the_written_list(prepared_folder: Path) -> None:
    written = json.loads((prepared_folder / "users.json").read_text())
    data = load_prepared(prepared_folder)
    assert isinstance(data.user_ids, LazyIds) and "not read yet" in repr(data.user_ids)
    data.splits["train"][:4]  # what training touches leaves the ids unread
    assert data.user_ids._ids is None
    assert len(data.user_ids) == len(written) == 90
    assert data.user_ids == written and written == data.user_ids and data.user_ids != written[:-1]
    assert data.user_ids[0] == written[0] and data.user_ids[-1] == written[-1] and data.user_ids[2:5] == written[2:5]
    assert list(data.user_ids) == written and data.user_ids.index(written[7]) == 7 and written[3] in data.user_ids
    assert data.user_ids == load_prepared(prepared_folder).user_ids  # two lazy ones compare by content
    items = json.loads((prepared_folder / "items.json").read_text())
    assert isinstance(data.item_ids, LazyIds) and data.item_ids._ids is None  # items.json: the same, read lazily
    assert data.item_ids == items and len(data.item_ids) == len(items)


def test_saving_a_loaded_folder_writes_the_same_id_files(prepared_folder: Path, tmp_path: Path) -> None:
    """The ids are written in slices; the file is byte for byte what json.dump of the list writes."""
    load_prepared(prepared_folder).save(tmp_path / "again")
    for name in ("users.json", "items.json"):
        assert (tmp_path / "again" / name).read_text() == (prepared_folder / name).read_text()
    ids = [f"u{i}" for i in range(70_000)] + ["ü"]  # more than one slice, and a non-ASCII id
    _write_id_list(tmp_path / "ids.json", pa.array(ids, pa.string()))
    assert (tmp_path / "ids.json").read_text(encoding="utf-8") == json.dumps(ids, ensure_ascii=False)
    _write_id_list(tmp_path / "none.json", pa.array([], pa.string()))
    assert (tmp_path / "none.json").read_text() == "[]"


@pytest.mark.parametrize(("content", "message"), [("[1, 2]", "not a JSON list of id strings"),
                                                  ("[\"a\"", "not valid JSON")])
def test_a_corrupt_users_json_fails_on_first_use(prepared_folder: Path, tmp_path: Path, content: str,
                                                 message: str) -> None:
    folder = tmp_path / "copy"
    load_prepared(prepared_folder).save(folder)
    (folder / "users.ids.arrow").unlink()  # a folder prepared before the Arrow ids: the JSON is what is read
    (folder / "users.json").write_text(content)
    data = load_prepared(folder)  # the splits and item ids load; the user ids are not needed yet
    with pytest.raises(DataError, match=message):
        len(data.user_ids)


@pytest.mark.parametrize("name", ["users", "items"])
def test_the_arrow_ids_beside_the_json_are_what_is_read_and_old_folders_read_the_json(
        prepared_folder: Path, tmp_path: Path, name: str) -> None:
    written = json.loads((prepared_folder / f"{name}.json").read_text())
    column = pa.ipc.open_file(pa.memory_map(str(prepared_folder / f"{name}.ids.arrow"))).read_all().column("id")
    assert column.to_pylist() == written
    folder = tmp_path / "copy"
    load_prepared(prepared_folder).save(folder)
    (folder / f"{name}.json").write_text("[]")  # not read while the Arrow file is there
    assert getattr(load_prepared(folder), f"{name[:-1]}_ids") == written
    (folder / f"{name}.ids.arrow").unlink()
    (folder / f"{name}.json").write_text(json.dumps(written, ensure_ascii=False))
    assert getattr(load_prepared(folder), f"{name[:-1]}_ids") == written  # the legacy path: the JSON scan


@pytest.mark.parametrize("damage", ["truncated", "numbers"])
def test_a_corrupt_arrow_id_file_fails_on_first_use(prepared_folder: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "copy"
    load_prepared(prepared_folder).save(folder)
    path = folder / "users.ids.arrow"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, pa.schema([("id", pa.int64())])) as writer:
            writer.write_table(pa.table({"id": [1, 2]}))
    data = load_prepared(folder)
    with pytest.raises(DataError, match="users.ids.arrow is corrupt"):
        len(data.user_ids)


def test_a_missing_users_json_fails_at_load(prepared_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    load_prepared(prepared_folder).save(folder)
    (folder / "users.json").unlink()
    with pytest.raises(DataError, match="users.json is missing"):
        load_prepared(folder)


def test_item_side_information_is_read_on_first_use(prepared_folder: Path, tmp_path: Path) -> None:
    data = load_prepared(prepared_folder)
    assert data.items is None  # prepared from a log without a catalogue
    frame = pd.DataFrame({"item_id": data.item_ids, "title": [f"item {item}" for item in data.item_ids]})
    data.items_source = frame
    data.save(tmp_path / "with_items")
    loaded = load_prepared(tmp_path / "with_items")
    assert loaded.items_source == tmp_path / "with_items" / "items.parquet"  # not read by load_prepared
    pd.testing.assert_frame_equal(loaded.items, frame)
    assert loaded.items is loaded.items  # read once


MIXED = ["", "a, b", "[x]", "é", "日本", " ", "a,", "]", "x" * 40]  # ids holding separators, brackets, non-ASCII


@pytest.mark.parametrize(("ids", "dump", "fast"), [
    ([f"{i}" for i in range(70_000)] + MIXED, {"ensure_ascii": False}, True),  # more than one slice of the scan
    (MIXED, {"ensure_ascii": False, "separators": (",", ":")}, True),  # compact separators
    (["only"], {}, True),
    ([], {}, True),
    (MIXED, {"ensure_ascii": False, "indent": 1}, False),  # another layout: the JSON parser
    (['a"b', "back\\slash", "tab\t", "é"], {}, False),  # escapes: the JSON parser
])
def test_id_files_read_into_arrow_as_json_reads_them(tmp_path: Path, ids: list[str], dump: dict, fast: bool) -> None:
    """What prepare writes is scanned straight into Arrow; any other valid list still reads, by the JSON parser."""
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(ids, **dump), encoding="utf-8")
    assert (read_id_array(path) is not None) == fast
    lazy = LazyIds(path)
    assert lazy.ids.equals(pa.array(ids, pa.string())) and list(lazy) == ids


def test_prepared_id_files_take_the_scan(prepared_folder: Path) -> None:
    for name in ("users.json", "items.json"):
        assert read_id_array(prepared_folder / name).to_pylist() == json.loads((prepared_folder / name).read_text())


@pytest.mark.parametrize(("content", "message"), [('["a" "b"]', "not valid JSON"), ('["a",, "b"]', "not valid JSON"),
                                                  (b'["\xff"]', "not valid JSON"), ('["a", 1]', "not a JSON list"),
                                                  ('["a\x01"]', "not valid JSON"), ("", "not valid JSON")])
def test_damaged_id_files_fail_as_json_does(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "ids.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert read_id_array(path) is None
    with pytest.raises(DataError, match=message):
        len(LazyIds(path))
