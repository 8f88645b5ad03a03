"""The binary item index: exact lookups, the safetensors file, and old JSON indexes still loading."""

from __future__ import annotations

import json
import mmap
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from safetensors.numpy import load_file, save_file

from gamer_hf import GamerTokenizerFast
from gamer_hf.modeling import item_index_gamer
from gamer_hf.modeling.item_index_gamer import ItemIndex

LEGACY = Path(__file__).parent / "fixtures" / "legacy_tiny"
BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}
# ids that sort differently as numbers, as bytes and by length, non-ASCII, and the empty id
IDS = ["10", "9", "100", "a", "ab", "b", "", "é", "日本", "z" * 30, "0", "-1", "a b"]


SHORT_IDS = [item for item in IDS if len(item.encode()) <= 8]  # searched as 8-byte integer keys


@pytest.fixture(scope="module", params=["long", "short"])
def index(request) -> tuple[dict[str, tuple[int, ...]], ItemIndex]:
    rng = np.random.default_rng(0)
    mapping = {item: tuple(int(c) for c in rng.integers(0, 300, 3)) for item in (IDS if request.param == "long" else SHORT_IDS)}
    return mapping, ItemIndex.from_mapping(mapping)


@pytest.mark.parametrize("few_ids", [0, 256], ids=["padded-search", "python-int-keys"])
def test_lookups_agree_with_a_dict(index, monkeypatch, few_ids: int) -> None:
    mapping, built = index
    monkeypatch.setattr(item_index_gamer, "_FEW_IDS", few_ids)  # a short call's keys: padded arrays or Python ints
    monkeypatch.setattr(item_index_gamer, "_CACHED_CALL", 0)  # each call searched, none answered from the cache
    assert list(built.item_ids) == sorted(mapping) and built == mapping
    queries = [*IDS, "1", "a\0", "aa", "z" * 31, "zz", "日", "e", "12345678", "123456789", 10, None]
    rows = built.rows(queries)
    for query, row in zip(queries, rows.tolist()):
        assert row == built.row(query if isinstance(query, str) else str(query))
        assert (row >= 0) == (str(query) in mapping)
        if row >= 0:
            assert built.item_ids[row] == str(query) and built[str(query)] == mapping[str(query)]
    assert "1" not in built and built.get("1") is None


QUERIES = [*IDS, "1", "a\0", "zz", "日", "12345678", 10, 9, "9", None, "", "ghost"]


@pytest.mark.parametrize("cache_size", [1 << 14, 3])
def test_small_calls_answer_from_the_row_cache_as_the_search_does(index, monkeypatch, cache_size: int) -> None:
    """A request-sized call gives the rows of a direct search, cold and warm, unknown and non-str ids included; a warm
    call searches nothing; a small cache starts over rather than grow."""
    mapping, _ = index
    built = ItemIndex.from_mapping(mapping)  # its own, empty cache
    monkeypatch.setattr(item_index_gamer, "_CACHED_IDS", cache_size)
    with monkeypatch.context() as direct:
        direct.setattr(item_index_gamer, "_CACHED_CALL", 0)  # every call too large for the cache
        expected = built.rows(QUERIES).tolist()
    assert expected == [built.row(str(query)) for query in QUERIES]
    for query in QUERIES:  # one id a call, so the small cache fills and starts over
        assert built.rows([query]).tolist() == [built.row(str(query))]
        assert len(built._cached_rows) <= cache_size
    if cache_size > len(QUERIES):
        monkeypatch.setattr(ItemIndex, "_search", lambda *_: pytest.fail("a cached id was searched again"))
    assert built.rows(QUERIES).tolist() == expected
    assert built.rows([]).tolist() == []


def test_the_row_cache_is_shared_safely_by_threads(index, monkeypatch) -> None:
    """The server looks ids up from its event loop and its decode thread at once: with a cache small enough to start
    over all the time, every thread still gets the direct search's rows."""
    mapping, _ = index
    built = ItemIndex.from_mapping(mapping)
    expected = {str(query): built.row(str(query)) for query in QUERIES}
    monkeypatch.setattr(item_index_gamer, "_CACHED_IDS", 5)

    def lookups(seed: int) -> list[bool]:
        rng = np.random.default_rng(seed)
        calls = [[QUERIES[i] for i in rng.choice(len(QUERIES), size=rng.integers(1, 8))] for _ in range(300)]
        return [built.rows(call).tolist() == [expected[str(query)] for query in call] for call in calls]

    with ThreadPoolExecutor(4) as pool:
        assert all(all(results) for results in pool.map(lookups, range(8)))


def test_ids_longer_than_the_catalogues_are_not_cached() -> None:
    """A request's strings bound the cache's bytes: an id longer than every catalogue id matches nothing and stays out."""
    built = ItemIndex.from_mapping({"a": (0,), "bb": (1,)})
    long = "x" * 100_000
    for _ in range(2):
        assert built.rows([long, "bb"]).tolist() == [-1, 1] and built.rows([long]).tolist() == [-1]
    assert set(built._cached_rows) == {"bb"}


def test_each_index_caches_its_own_rows() -> None:
    """Two catalogues give the same id other rows; warm caches never answer one index with the other's rows."""
    first, second = ItemIndex.from_mapping({"x": (0,), "y": (1,)}), ItemIndex.from_mapping({"a": (0,), "x": (1,)})
    for _ in range(2):
        assert first.rows(["x", "a"]).tolist() == [0, -1] and second.rows(["x", "a"]).tolist() == [1, 0]


@pytest.mark.parametrize("on_unknown", ["skip", "raise"])
def test_encodings_with_unknown_items_stay_the_same_once_cached(on_unknown: str) -> None:
    """The tokenizer's encodings through the cache: a history's second encoding (its ids cached by the first) equals
    the first, unknown items skipped or refused alike."""
    tokenizer = GamerTokenizerFast.from_items({"9": (1, 2), "10": (3, 0), "é": (0, 1)}, behaviors=BEHAVIORS,
                                              codebook_size=4)
    history = [("click", "9"), ("cart", "ghost"), ("buy", 10), ("click", "é")]
    if on_unknown == "raise":
        for _ in range(2):
            with pytest.raises(ValueError, match="unknown item 'ghost'"):
                tokenizer.encode_histories([history], behavior="buy", on_unknown=on_unknown)
        return
    first, second = (tokenizer.encode_histories([history], behavior="buy", on_unknown=on_unknown) for _ in range(2))
    assert first == second
    known = [pair for pair in history if pair[1] != "ghost"]
    assert first["input_ids"] == tokenizer.encode_histories([known], behavior="buy")["input_ids"]
    assert len(first["input_ids"][0]) == 3 * 3 + 1


def test_save_load_round_trip_is_compact(index, tmp_path: Path) -> None:
    mapping, built = index
    built.save(tmp_path / "index.safetensors")
    tensors = load_file(tmp_path / "index.safetensors")
    assert tensors["codes"].dtype == np.int16  # codes up to 299 do not fit uint8
    assert tensors["item_ids"].nbytes == sum(len(item.encode()) + 1 for item in mapping)
    assert ItemIndex.load(tmp_path / "index.safetensors") == mapping


def test_tokenizer_saves_binary_index_and_reads_it_back(tmp_path: Path) -> None:
    tok = GamerTokenizerFast.from_items({"sku2": (1, 2), "sku10": (3, 0), "sku1": (0, 1)}, behaviors=BEHAVIORS)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "item_index.safetensors").is_file() and not (tmp_path / "item_index.json").exists()
    assert load_file(tmp_path / "item_index.safetensors")["codes"].dtype == np.uint8
    loaded = GamerTokenizerFast.from_pretrained(tmp_path)
    assert loaded.item_index == tok.item_index and list(loaded.item_ids) == ["sku1", "sku10", "sku2"]
    assert loaded.item_code_tensor.tolist() == [[0, 1], [3, 0], [1, 2]]
    history = [("click", "sku10"), ("buy", "sku2"), ("cart", "gone")]
    assert loaded.encode_interactions(history, on_unknown="skip") == tok.encode_interactions(history, on_unknown="skip")
    assert loaded.decode_items([[3, 0], [0, 0]], token_ids=False) == ["sku10", None]


def test_item_ids_is_a_view_not_a_copy() -> None:
    tok = GamerTokenizerFast.from_items({"b": (1,), "a": (0,)}, behaviors=BEHAVIORS)
    assert tok.item_ids is tok.item_ids and tok.item_code_tensor is tok.item_code_tensor
    assert tok.item_ids[-1] == "b" and tok.item_ids[:5] == ["a", "b"] and len(tok.item_ids) == 2
    with pytest.raises(IndexError, match="outside the index of 2 items"):
        tok.item_ids[2]



def test_take_decodes_the_ids_at_many_positions(index) -> None:
    """Repeated and unordered positions, the empty and non-ASCII ids: each as `item_ids[position]`."""
    _, built = index
    positions = np.random.default_rng(1).integers(0, len(built), 40)
    assert built.item_ids.take(positions) == [built.item_ids[int(p)] for p in positions]
    assert built.item_ids.take(np.arange(len(built))) == list(built.item_ids) and built.item_ids.take([]) == []
    for outside in ([len(built)], [0, -1]):
        with pytest.raises(IndexError, match=f"within the index of {len(built)} items"):
            built.item_ids.take(outside)

def test_legacy_json_index_still_loads_and_resaves(tmp_path: Path) -> None:
    payload = json.loads((LEGACY / "item_index.json").read_text())
    tok = GamerTokenizerFast.from_pretrained(LEGACY)
    assert tok.item_index == dict(zip(payload["item_ids"], map(tuple, payload["codes"])))
    tok.save_pretrained(tmp_path / "resaved")
    assert GamerTokenizerFast.from_pretrained(tmp_path / "resaved").item_index == tok.item_index


def _unsorted(path: Path) -> None:
    save_file({"codes": np.zeros((2, 1), np.uint8), "item_ids": np.frombuffer(b"b\0a\0", np.uint8).copy()}, path)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _foreign(path: Path) -> None:
    save_file({"weight": np.zeros(3, np.float32)}, path)


@pytest.mark.parametrize(("damage", "message"), [
    (_truncated, r"item_index\.safetensors is corrupt"),
    (_unsorted, r"not sorted and unique at row 1 \('b' then 'a'\)"),
    (_foreign, r"not a GAMER item index: it holds \['weight'\]"),
])
def test_damaged_index_file_is_named(tmp_path: Path, damage, message: str) -> None:
    shutil.copytree(LEGACY, tmp_path / "tok")
    GamerTokenizerFast.from_pretrained(LEGACY).save_pretrained(tmp_path / "tok")
    damage(tmp_path / "tok" / "item_index.safetensors")
    with pytest.raises(ValueError, match=message):
        GamerTokenizerFast.from_pretrained(tmp_path / "tok")


def test_nul_in_an_item_id_is_refused() -> None:
    with pytest.raises(ValueError, match=r"item id 'a\\x00b' contains a NUL character"):
        GamerTokenizerFast.from_items({"a\0b": (0,)}, behaviors=BEHAVIORS)


def _mapped(array: np.ndarray) -> bool:
    while array is not None and not isinstance(array, mmap.mmap):
        array = array.base
    return array is not None


@pytest.mark.parametrize(("top", "dtype"), [(255, np.uint8), (256, np.int16), (40_000, np.int32)])
def test_a_loaded_index_is_the_mapped_file_in_its_narrow_dtype(tmp_path: Path, top: int, dtype) -> None:
    """One table: the codes and ids are read in place from the file, the tokenizer's code tensor and token gather
    use them, and what is built beside them is int32/uint8 (no int64 array of the catalogue's size)."""
    mapping = {item: (i, top - i) for i, item in enumerate(IDS)}
    tok = GamerTokenizerFast.from_items(mapping, BEHAVIORS, codebook_size=top + 1)
    tok.save_pretrained(tmp_path)
    loaded = GamerTokenizerFast.from_pretrained(tmp_path)
    index = loaded.item_index
    assert index.codes.dtype == dtype and _mapped(index.codes) and _mapped(index._bytes)
    assert index._starts.dtype == np.int32 and index._lengths.dtype == np.uint8
    assert np.shares_memory(loaded.item_code_tensor.numpy(), index.codes)
    assert not [name for name, value in vars(loaded).items() if isinstance(value, np.ndarray) and value.size > 16]
    assert index == mapping and list(index.item_ids) == sorted(mapping)
    rows = index.rows(sorted(mapping))
    expected = np.asarray([mapping[item] for item in sorted(mapping)]) + np.asarray(loaded.code_token_offsets)
    assert np.array_equal(loaded.item_tokens(rows), expected)
    assert loaded.encode_interactions([("buy", "日本")]) == [loaded.behavior_token_id("buy"), *expected[index.row("日本")]]
    loaded.save_pretrained(tmp_path)  # over the mapped file: a new file is renamed into place, the map stays valid
    assert index == mapping and GamerTokenizerFast.from_pretrained(tmp_path).item_index == mapping


def test_an_index_file_with_int64_codes_still_loads(tmp_path: Path) -> None:
    """A file written with wider codes than needed (by hand, or a tool of its own) loads, narrowed in memory."""
    ids = np.frombuffer(b"a\0b\0", np.uint8).copy()
    save_file({"codes": np.array([[1, 7], [2, 0]], np.int64), "item_ids": ids}, tmp_path / "index.safetensors")
    index = ItemIndex.load(tmp_path / "index.safetensors")
    assert index == {"a": (1, 7), "b": (2, 0)} and index.codes.dtype == np.uint8


def test_from_sorted_buffer_takes_arrow_buffers() -> None:
    """Arrow's offsets and data buffers (of a slice, so not starting at 0) build the same index as from_pairs."""
    ids = pa.array(["x", *sorted(IDS), "~"]).slice(1, len(IDS))
    offsets = np.frombuffer(ids.buffers()[1], np.int32, count=len(ids) + 1, offset=4 * ids.offset)
    codes = np.arange(2 * len(IDS)).reshape(-1, 2)
    index = ItemIndex.from_sorted_buffer(ids.buffers()[2], offsets, codes)
    assert index == ItemIndex.from_pairs(sorted(IDS), codes) and len(ItemIndex.from_sorted_buffer(b"", [0], codes[:0])) == 0
    with pytest.raises(ValueError, match=r"where: item id 'b\\x00c' contains a NUL character"):
        ItemIndex.from_sorted_buffer(b"ab\0c", [0, 1, 4], np.zeros((2, 0)), "where")
    with pytest.raises(ValueError, match=r"not sorted and unique at row 1 \('b' then 'a'\)"):
        ItemIndex.from_sorted_buffer(b"ba", [0, 1, 2], np.zeros((2, 0)))


@pytest.mark.parametrize("ids", [["3", "10", "7"], ["sku-000000012", "é", ""], []])
def test_most_popular_index_is_built_from_arrow_ids(ids: list[str]) -> None:
    """MostPopular's index of its training items (sorted Arrow ids, any string type) via from_sorted_buffer."""
    from gamer_hf.evaluation.baselines import _sorted_index

    for kind in (pa.string(), pa.large_string()):
        array = pa.array(sorted(ids), kind)
        index = _sorted_index(array)
        assert list(index.item_ids) == sorted(ids) and index.rows(sorted(ids)).tolist() == list(range(len(ids)))
    with pytest.raises(ValueError, match=r"MostPopular's training items: item id 'a\\x00' contains a NUL"):
        _sorted_index(pa.array(["a\0", "b"]))
