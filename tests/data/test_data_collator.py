"""GamerCollator against the tokenizer contract (padding, labels on code tokens, eval-loss targets) and against
the pair-by-pair loop collator it replaced, on synthetic and real rows."""

from __future__ import annotations

import importlib.util
import mmap
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.data import SYNTHETIC_BEHAVIORS, GamerCollator, generate_synthetic, prepare
from gamer_hf.data.collator import NUMBER_COLUMNS, RowNumbers, _pack_rows, _TokenTable
from gamer_hf.data.prepare import _write_arrow_ids, load_prepared
from gamer_hf.errors import ConfigurationError, DataError

NUM_LEVELS = 2


@pytest.fixture
def prepared(make_log, session_rows):
    return prepare(make_log(session_rows), protocol="session", max_history=None, min_user_events=1,
                   augment_copies=1, progress=False)


@pytest.fixture
def tokenizer(prepared, levels) -> GamerTokenizerFast:
    index = {item: (i % 3, i // 3) for i, item in enumerate(prepared.item_ids)}
    return GamerTokenizerFast.from_items(index, levels, codebook_size=[3, 4])


def _unpadded(batch: dict[str, torch.Tensor], row: int) -> list[int]:
    return batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()


def test_training_rows_score_every_code_token(prepared, tokenizer) -> None:
    rows = list(prepared.splits["train"])
    batch = GamerCollator(tokenizer)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    for i, row in enumerate(rows):
        expected = tokenizer.encode_interactions(list(zip(row["behaviors"], row["items"])))
        length = len(expected)
        assert _unpadded(batch, i) == expected
        assert batch["attention_mask"][i, :length].all() and not batch["attention_mask"][i, length:].any()  # right pad
        assert (batch["input_ids"][i, length:] == tokenizer.pad_token_id).all()
        labels = batch["labels"][i]
        code = tokenizer.code_token_mask(batch["input_ids"][i]) & batch["attention_mask"][i].bool()
        assert torch.equal(labels[code], batch["input_ids"][i][code])
        assert (labels[~code] == -100).all()
        assert int(code.sum()) == NUM_LEVELS * len(row["items"])


def test_evaluation_rows_score_only_the_target_codes(prepared, tokenizer) -> None:
    rows = list(prepared.splits["test"])
    batch = GamerCollator(tokenizer, max_history=3)(rows)
    examples = [(row, item) for row in rows for item in row["target_items"]]  # one sequence per target item
    assert batch["input_ids"].shape[0] == len(examples)
    for i, (row, item) in enumerate(examples):
        history = list(zip(row["history_behaviors"], row["history_items"]))
        prompt = tokenizer.encode_histories([history], behavior=row["target_behavior"], max_history=3)["input_ids"][0]
        target = tokenizer.item_token_ids(item)
        assert _unpadded(batch, i) == prompt + target
        labels = batch["labels"][i][batch["attention_mask"][i].bool()]
        assert labels.tolist() == [-100] * len(prompt) + target


def test_training_rows_are_trimmed_to_max_history_plus_one(prepared, tokenizer) -> None:
    row = prepared.splits["train"][0]
    batch = GamerCollator(tokenizer, max_history=2)([row])
    pairs = list(zip(row["behaviors"], row["items"]))[-3:]
    assert _unpadded(batch, 0) == tokenizer.encode_interactions(pairs)


def test_unknown_items_raise_or_are_skipped(prepared, levels) -> None:
    known = prepared.item_ids[:-1]  # one item has no semantic ID
    tokenizer = GamerTokenizerFast.from_items({item: (i,) for i, item in enumerate(known)}, levels)
    missing = prepared.item_ids[-1]
    rows = [r for r in prepared.splits["test"] if missing in r["target_items"] + r["history_items"]]
    assert rows
    with pytest.raises(ValueError, match=repr(missing)):
        GamerCollator(tokenizer)(rows)
    test = list(prepared.splits["test"])
    batch = GamerCollator(tokenizer, on_unknown="skip")(test)
    assert batch["input_ids"].shape[0] == sum(item != missing for row in test for item in row["target_items"])


def test_pad_to_multiple_and_mixed_batches(prepared, tokenizer) -> None:
    rows = [prepared.splits["train"][0], prepared.splits["validation"][0]]
    batch = GamerCollator(tokenizer, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].shape[1] % 8 == 0
    with pytest.raises(ValueError, match="neither training nor evaluation columns"):
        GamerCollator(tokenizer)([{"user_id": "u"}])


def test_model_takes_the_batch(prepared, tokenizer) -> None:
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer)).eval()
    for split in ("train", "validation"):
        batch = GamerCollator(tokenizer)(list(prepared.splits[split]))
        with torch.no_grad():
            loss = model(**batch).loss
        assert torch.isfinite(loss)


# ----- the vectorized collator against the pair-by-pair loop it replaced (recipes/bench/data_pipeline.py) -----

BENCH = Path(__file__).resolve().parents[2] / "recipes" / "bench" / "data_pipeline.py"


@pytest.fixture(scope="module")
def loop_collator() -> type:
    spec = importlib.util.spec_from_file_location("bench_data_pipeline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LoopCollator


@pytest.fixture(scope="module")
def synthetic_prepared():
    events, _ = generate_synthetic(num_users=120, num_items=90, seed=3)
    return prepare(events, behaviors=SYNTHETIC_BEHAVIORS, protocol="session", max_history=None, augment_copies=1,
                   progress=False)


def _batches(prepared, size: int) -> list[list[dict]]:
    """Mixed batches: training rows interleaved with validation and test rows."""
    rows = [row for split in ("train", "validation", "test") for row in prepared.splits[split]]
    rows = rows[::2] + rows[1::2]
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _assert_same(vectorized: GamerCollator, loop, batches: list[list[dict]]) -> None:
    for batch in batches:
        expected, got = loop(batch), vectorized(batch)
        assert set(got) == set(expected)
        for key in expected:
            assert torch.equal(got[key], expected[key]), key


@pytest.mark.parametrize("max_history", [None, 0, 1, 4])
@pytest.mark.parametrize("on_unknown", ["raise", "skip"])
def test_vectorized_equals_loop_on_synthetic_rows(synthetic_prepared, loop_collator, levels, max_history,
                                                  on_unknown) -> None:
    items = synthetic_prepared.item_ids
    if on_unknown == "skip":
        items = items[::3] + items[1::3]  # a third of the items have no semantic ID
    index = {item: (i % 5, i // 5) for i, item in enumerate(items)}
    tokenizer = GamerTokenizerFast.from_items(index, levels, codebook_size=[5, 64])
    options = {"max_history": max_history, "on_unknown": on_unknown, "pad_to_multiple_of": 8}
    _assert_same(GamerCollator(tokenizer, **options), loop_collator(tokenizer, **options),
                 _batches(synthetic_prepared, 37))


@pytest.mark.realdata
def test_vectorized_equals_loop_on_a_real_dataset(data_dir, loop_collator) -> None:
    prepared = prepare(data_dir / "retailrocket_cml", protocol="loo", max_history=20, augment_copies=1,
                       progress=False)
    index = {item: (i % 64, i // 64) for i, item in enumerate(prepared.item_ids)}
    tokenizer = GamerTokenizerFast.from_items(index, prepared.metadata["behaviors"], codebook_size=[64, 512])
    batches = _batches(prepared, 256)
    assert sum(map(len, batches)) > 4000
    _assert_same(GamerCollator(tokenizer, max_history=20), loop_collator(tokenizer, max_history=20), batches)


def _raised(collate, rows) -> str:
    with pytest.raises(ValueError) as error:
        collate(rows)
    return str(error.value)


@pytest.mark.parametrize("unknown", ["history item", "target item", "target behavior", "history behavior"])
def test_errors_name_the_first_unknown_id_as_the_loop_did(prepared, levels, loop_collator, unknown) -> None:
    index = {item: (i,) for i, item in enumerate(prepared.item_ids)}
    tokenizer = GamerTokenizerFast.from_items(index, levels)
    rows = [dict(row) for row in prepared.splits["test"]] + [dict(prepared.splits["train"][0])]
    bad = rows[1]
    if unknown == "history item":
        bad["history_items"] = bad["history_items"][:-1] + ["nope"]
    elif unknown == "target item":
        bad["target_items"] = ["nope"]
        rows[2]["history_items"] = ["later"] * len(rows[2]["history_items"])  # a later row's error stays unseen
    elif unknown == "target behavior":
        bad["target_behavior"] = "wishlist"
    else:
        bad["history_behaviors"] = ["wishlist"] + bad["history_behaviors"][1:]
    message = _raised(GamerCollator(tokenizer), rows)
    assert message == _raised(loop_collator(tokenizer), rows)
    assert ("wishlist" if "behavior" in unknown else "'nope'") in message
    assert _raised(GamerCollator(tokenizer), rows[:1] + [{"user_id": "u"}] + rows[1:]).startswith("row has neither")


def test_skip_still_refuses_an_unknown_requested_behavior(prepared, tokenizer) -> None:
    row = dict(prepared.splits["test"][0], target_behavior="wishlist")
    with pytest.raises(ValueError, match="wishlist"):
        GamerCollator(tokenizer, on_unknown="skip")([row])


def test_negative_max_history_is_refused(tokenizer) -> None:
    with pytest.raises(ValueError, match="max_history"):
        GamerCollator(tokenizer, max_history=-1)


# ----- Arrow batches: the same output without Python rows -----

def _arrow_batches(prepared, size: int) -> list:
    """Per split, Arrow slices (offsets not starting at zero) as `with_format("arrow")` DataLoaders hand them over."""
    return [prepared.splits[split].with_format("arrow")[start:start + size]
            for split in ("train", "validation", "test") for start in range(0, len(prepared.splits[split]), size)]


def _as_rows(batch) -> list[dict]:
    return batch.to_pylist()


@pytest.mark.parametrize("max_history", [None, 0, 3])
@pytest.mark.parametrize("on_unknown", ["raise", "skip"])
def test_arrow_batches_collate_like_their_rows(synthetic_prepared, levels, max_history, on_unknown) -> None:
    items = synthetic_prepared.item_ids
    if on_unknown == "skip":
        items = items[1::2]
    tokenizer = GamerTokenizerFast.from_items({item: (i % 5, i // 5) for i, item in enumerate(items)}, levels,
                                              codebook_size=[5, 64])
    collator = GamerCollator(tokenizer, max_history=max_history, on_unknown=on_unknown)
    batches = _arrow_batches(synthetic_prepared, 29)
    assert any(batch["user_id"].chunks[0].offset for batch in batches)  # sliced views, not fresh tables
    for batch in batches:
        expected, got = collator(_as_rows(batch)), collator(batch)
        for key in expected:
            assert torch.equal(got[key], expected[key]), key
    record_batch = batches[0].to_batches()[0]
    assert torch.equal(collator(record_batch)["input_ids"], collator(_as_rows(batches[0]))["input_ids"])


def _with_item_type(batch, item_type: str, numbers: dict[str, int]):
    """The batch with its item columns as `item_type` lists: large_string, or int64 (each id its number)."""
    for name in ("items", "history_items", "target_items"):
        if name in batch.column_names:
            if item_type == "int64":
                column = pa.array([[numbers[item] for item in row] for row in batch[name].to_pylist()],
                                  pa.list_(pa.int64()))
            else:
                column = batch[name].cast(pa.list_(pa.large_string()))
            batch = batch.set_column(batch.column_names.index(name), name, column)
    return batch


@pytest.mark.parametrize("item_type", ["large_string", "int64"])
@pytest.mark.parametrize("on_unknown", ["raise", "skip"])
def test_arrow_item_columns_of_other_types_collate_like_their_rows(synthetic_prepared, levels, item_type,
                                                                   on_unknown) -> None:
    """String ids are searched in the Arrow buffers, other ids as str(id): both agree with the rows."""
    numbers = {item: i for i, item in enumerate(synthetic_prepared.item_ids)}
    known = list(numbers)[1::2] if on_unknown == "skip" else list(numbers)
    keys = [numbers[item] if item_type == "int64" else item for item in known]
    tokenizer = GamerTokenizerFast.from_items({key: (i % 5, i // 5) for i, key in enumerate(keys)}, levels,
                                              codebook_size=[5, 64])
    collator = GamerCollator(tokenizer, max_history=3, on_unknown=on_unknown)
    for batch in _arrow_batches(synthetic_prepared, 29):
        batch = _with_item_type(batch, item_type, numbers)
        assert batch["items" if "items" in batch.column_names else "history_items"].type.value_type == item_type
        expected, got = collator(_as_rows(batch)), collator(batch)
        for key in expected:
            assert torch.equal(got[key], expected[key]), key


@pytest.mark.realdata
def test_arrow_batches_collate_like_their_rows_on_a_real_dataset(data_dir, loop_collator) -> None:
    """By ids and by the number columns, against the loop collator on the same rows."""
    prepared = prepare(data_dir / "retailrocket_cml", protocol="loo", max_history=20, progress=False)
    index = {item: (i % 64, i // 64) for i, item in enumerate(prepared.item_ids)}
    tokenizer = GamerTokenizerFast.from_items(index, prepared.metadata["behaviors"], codebook_size=[64, 512])
    collator = GamerCollator(tokenizer, max_history=20)
    by_numbers = GamerCollator(tokenizer, max_history=20, numbers=_numbers(prepared, tokenizer))
    loop = loop_collator(tokenizer, max_history=20)
    for batch in _arrow_batches(prepared, 256):
        expected = loop(_as_rows(batch))
        for got in (collator(_as_rows(batch)), collator(batch), by_numbers(batch)):
            assert all(torch.equal(got[key], expected[key]) for key in expected)


# ----- the number columns of prepared rows: the same output, no id looked up -----

def _numbers(prepared, tokenizer) -> RowNumbers:
    return RowNumbers.of(tokenizer, prepared.item_ids, prepared.metadata["behaviors"])


def _without_numbers(batch: pa.Table) -> pa.Table:
    """The batch as a folder prepared before the number columns holds it."""
    return batch.drop_columns([name for name in NUMBER_COLUMNS.values() if name in batch.column_names])


@pytest.mark.parametrize("max_history", [None, 0, 3])
@pytest.mark.parametrize("on_unknown", ["raise", "skip"])
def test_number_columns_collate_like_the_ids_without_a_lookup(synthetic_prepared, levels, max_history, on_unknown,
                                                              monkeypatch) -> None:
    items = synthetic_prepared.item_ids
    if on_unknown == "skip":
        items = items[1::2]  # half the items have no semantic ID: their numbers map to UNKNOWN
    tokenizer = GamerTokenizerFast.from_items({item: (i % 5, i // 5) for i, item in enumerate(items)}, levels,
                                              codebook_size=[5, 64])
    options = {"max_history": max_history, "on_unknown": on_unknown, "pad_to_multiple_of": 4}
    by_ids = GamerCollator(tokenizer, **options)
    by_numbers = GamerCollator(tokenizer, numbers=_numbers(synthetic_prepared, tokenizer), **options)
    batches = _arrow_batches(synthetic_prepared, 29)
    expected = [by_ids(batch) for batch in batches]
    for batch, want in zip(batches, expected):  # a folder prepared before the number columns: by its ids
        got = by_numbers(_without_numbers(batch))
        assert all(torch.equal(got[key], want[key]) for key in want)

    def looked_up(*_):
        raise AssertionError("an id was looked up")

    monkeypatch.setattr(_TokenTable, "items", looked_up)
    monkeypatch.setattr(_TokenTable, "behaviors", looked_up)
    for batch, want in zip(batches, expected):
        got = by_numbers(batch)
        assert set(got) == set(want) and all(torch.equal(got[key], want[key]) for key in want)


def test_number_columns_raise_the_error_that_names_the_unknown_id(prepared, levels) -> None:
    known = prepared.item_ids[:-1]
    tokenizer = GamerTokenizerFast.from_items({item: (i,) for i, item in enumerate(known)}, levels)
    numbers = _numbers(prepared, tokenizer)
    assert numbers.items[-1] == -1 and (numbers.items[:-1] >= 0).all()
    test = prepared.splits["test"].with_format("arrow")[:]
    message = _raised(GamerCollator(tokenizer, numbers=numbers), test)
    assert message == _raised(GamerCollator(tokenizer), test) and repr(prepared.item_ids[-1]) in message


def test_numbers_of_another_catalogue_are_refused(prepared, tokenizer, levels) -> None:
    """Rows gathered in one tokenizer are not another's; a tokenizer built again from the same items is the same."""
    numbers = _numbers(prepared, tokenizer)
    fewer = GamerTokenizerFast.from_items({item: (i % 3, i // 3) for i, item in enumerate(prepared.item_ids[1:])}, levels,
                                          codebook_size=[3, 4])
    reordered = GamerTokenizerFast.from_items({item: (i % 3, i // 3) for i, item in enumerate(prepared.item_ids)},
                                              dict(reversed(levels.items())), codebook_size=[3, 4])
    for other in (fewer, reordered):  # another catalogue; the same items with other behavior tokens
        with pytest.raises(ConfigurationError, match=r"built for another tokenizer.*RowNumbers.of\(this tokenizer"):
            GamerCollator(other, numbers=numbers)
    again = GamerTokenizerFast.from_items({item: (i % 3, i // 3) for i, item in enumerate(prepared.item_ids)}, levels,
                                          codebook_size=[3, 4])
    test = prepared.splits["test"].with_format("arrow")[:]
    assert torch.equal(GamerCollator(again, numbers=numbers)(test)["input_ids"], GamerCollator(tokenizer)(test)["input_ids"])


def test_a_pickled_collator_keeps_one_item_index(prepared, tokenizer) -> None:
    """DataLoader workers (spawn) get the collator pickled: its numbers share the tokenizer's index, not a copy of
    it, and collate as before."""
    collator = GamerCollator(tokenizer, numbers=_numbers(prepared, tokenizer))
    again = pickle.loads(pickle.dumps(collator))
    assert again.numbers.index is again.tokenizer.item_index
    train = prepared.splits["train"].with_format("arrow")[:]
    assert torch.equal(again(train)["input_ids"], collator(train)["input_ids"])


@pytest.mark.parametrize("split", ["train", "test"])
def test_rows_whose_numbers_are_not_their_ids_are_refused(prepared, tokenizer, tmp_path, split) -> None:
    """Refused, naming the folder: a saved folder whose id map was replaced after prepare (here: reversed), id lists
    edited after prepare (their numbers as prepared), and numbers past the id map."""
    prepared.save(tmp_path / "prepared")
    _write_arrow_ids(tmp_path / "prepared" / "items.ids.arrow", pa.array(prepared.item_ids[::-1], pa.string()))
    changed = load_prepared(tmp_path / "prepared")
    rows = changed.splits[split].with_format("arrow")[:]
    with pytest.raises(DataError, match=r"prepared: a row's \w+ holds '\w+' as item number \d+, another item in the id map"):
        GamerCollator(tokenizer, numbers=_numbers(changed, tokenizer))(rows)
    name = "items" if split == "train" else "history_items"
    shorter = pa.array([row[1:] for row in rows[name].to_pylist()], rows.schema.field(name).type)  # as a map() may
    with pytest.raises(DataError, match=f"prepared: a row's {name} and {NUMBER_COLUMNS[name]} differ in length"):
        GamerCollator(tokenizer, numbers=_numbers(changed, tokenizer))(rows.set_column(
            rows.column_names.index(name), name, shorter))
    unchecked = RowNumbers(np.zeros(1, dtype=np.int32), _numbers(prepared, tokenizer).behaviors)  # one item only
    with pytest.raises(DataError, match="past the 1 items of this folder"):
        GamerCollator(tokenizer, numbers=unchecked)(rows)


def test_the_code_threshold_is_the_tokenizers_code_mask(tokenizer) -> None:
    vocabulary = torch.arange(len(tokenizer))
    codes = vocabulary.numpy() >= GamerCollator(tokenizer)._token_table().code_start
    assert np.array_equal(codes, tokenizer.code_token_mask(vocabulary).numpy()) and codes.any() and not codes.all()


def test_arrow_batches_raise_the_same_errors(prepared, levels) -> None:
    known = prepared.item_ids[:-1]
    tokenizer = GamerTokenizerFast.from_items({item: (i,) for i, item in enumerate(known)}, levels)
    test = prepared.splits["test"].with_format("arrow")[:]
    collator = GamerCollator(tokenizer)
    assert _raised(collator, test) == _raised(collator, _as_rows(test))
    assert _raised(collator, test.drop_columns(["target_items"])).startswith("row has neither")


def test_an_arrow_dataloader_covers_the_split_like_the_row_dataloader(prepared, tokenizer) -> None:
    """The README's recipe: a with_format("arrow") split, batch_size=None and a BatchSampler."""
    split, collator = prepared.splits["train"], GamerCollator(tokenizer)
    arrow = DataLoader(split.with_format("arrow"), batch_size=None, collate_fn=collator,
                       sampler=BatchSampler(RandomSampler(split), 3, drop_last=False))
    rows = DataLoader(split, batch_size=3, collate_fn=collator)

    def totals(loader: DataLoader) -> tuple[int, int]:
        batches = list(loader)
        return (sum(int(b["attention_mask"].sum()) for b in batches),
                sum(int(b["labels"].ne(-100).sum()) for b in batches))

    assert totals(arrow) == totals(rows) != (0, 0)


# ----- packed batches -----


def _examples_of(batch: dict[str, torch.Tensor]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of every example, from a padded or a packed batch."""
    if "attention_mask" in batch:
        return [(batch["input_ids"][r][m.bool()].tolist(), batch["labels"][r][m.bool()].tolist())
                for r, m in enumerate(batch["attention_mask"])]
    found = []
    for ids, labels, positions in zip(batch["input_ids"], batch["labels"], batch["position_ids"]):
        starts = [*(positions == 0).nonzero()[:, 0].tolist(), len(positions)]
        found += [(ids[a:b].tolist(), labels[a:b].tolist()) for a, b in zip(starts, starts[1:])]
    return found


def test_packed_rows_hold_the_padded_examples(synthetic_prepared, levels) -> None:
    index = {item: (i % 5, i // 5) for i, item in enumerate(synthetic_prepared.item_ids)}
    tokenizer = GamerTokenizerFast.from_items(index, levels, codebook_size=[5, 64])
    for rows in _batches(synthetic_prepared, 37):
        padded = GamerCollator(tokenizer, pad_to_multiple_of=8)(rows)
        packed = GamerCollator(tokenizer, pad_to_multiple_of=8, pack=True)(rows)
        assert set(packed) == {"input_ids", "position_ids", "labels"}  # no mask: the model reads it as packed
        assert packed["input_ids"].shape[1] == padded["input_ids"].shape[1]
        assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
        pads = [([tokenizer.pad_token_id] * len(ids), [-100] * len(ids))
                for ids, _ in _examples_of(packed) if set(ids) == {tokenizer.pad_token_id}]  # row tails
        assert sorted(_examples_of(packed)) == sorted(_examples_of(padded) + pads)


@pytest.mark.parametrize("pack", [False, True])
def test_repeats_can_be_left_out_of_the_loss(synthetic_prepared, levels, pack: bool) -> None:
    """score_repeats=False: in training rows, the codes of an interaction whose item the row holds earlier are not
    scored; everything else (ids, every other label, evaluation rows' targets, repeated or not) is unchanged."""
    index = {item: (i % 5, i // 5) for i, item in enumerate(synthetic_prepared.item_ids)}
    tokenizer = GamerTokenizerFast.from_items(index, levels, codebook_size=[5, 64])
    left_out = 0
    for rows in _batches(synthetic_prepared, 37):
        full, padded = GamerCollator(tokenizer)(rows), GamerCollator(tokenizer, score_repeats=False)(rows)
        assert torch.equal(full["input_ids"], padded["input_ids"])
        expected, example = full["labels"].clone(), 0
        for row in rows:
            if "items" not in row:  # an evaluation row: one example per target, labels as always
                example += len(row["target_items"])
                continue
            for place, item in enumerate(row["items"]):
                if item in row["items"][:place]:
                    expected[example, place * (NUM_LEVELS + 1) + 1:(place + 1) * (NUM_LEVELS + 1)] = -100
                    left_out += 1
            example += 1
        assert torch.equal(padded["labels"], expected)
        if pack:
            packed = GamerCollator(tokenizer, pack=True, score_repeats=False)(rows)
            pads = [([tokenizer.pad_token_id] * len(ids), [-100] * len(ids))
                    for ids, _ in _examples_of(packed) if set(ids) == {tokenizer.pad_token_id}]
            assert sorted(_examples_of(packed)) == sorted(_examples_of(padded) + pads)
    assert left_out > 50  # the synthetic users do come back to items


@pytest.mark.parametrize("seed", range(4))
def test_rows_are_first_fit_decreasing(seed: int) -> None:
    """The row of every example is the first with room, longest example first and ties in batch order, also
    through runs of equal lengths (where the search resumes)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, 300) * 4  # few distinct lengths: long runs of equal ones
    width = int(lengths.max()) + 4 * seed
    expected, room = np.empty(len(lengths), dtype=np.int64), []
    for example in sorted(range(len(lengths)), key=lambda e: -lengths[e]):
        row = next((r for r, free in enumerate(room) if free >= lengths[example]), len(room))
        room += [width] * (row == len(room))
        room[row] -= lengths[example]
        expected[example] = row
    rows, columns = _pack_rows(lengths, width)
    assert np.array_equal(rows, expected)
    assert (np.bincount(rows, weights=lengths) <= width).all() and rows.max() + 1 < len(lengths)
    for row in range(rows.max() + 1):  # the examples of a row lie side by side inside it, none overlapping
        placed = sorted(zip(columns[rows == row], lengths[rows == row]))
        assert all(start + size <= after for (start, size), (after, _) in zip(placed, placed[1:]))
        assert placed[0][0] >= 0 and placed[-1][0] + placed[-1][1] <= width


def test_packing_is_skipped_where_it_saves_no_row(prepared, tokenizer) -> None:
    rows = [prepared.splits["train"][0]]
    assert torch.equal(GamerCollator(tokenizer, pack=True)(rows)["attention_mask"],
                       GamerCollator(tokenizer)(rows)["attention_mask"])


@pytest.mark.realdata
def test_packed_loss_and_gradients_equal_padded_on_real_data(data_dir) -> None:
    """A slice of the real retailrocket log (76 users, histories of 1 to 51 interactions), training and validation
    rows."""
    import pandas as pd

    events = pd.read_csv(data_dir / "retailrocket_cml" / "events.csv.gz", nrows=15000, dtype={"item_id": str})
    prepared = prepare(events, behaviors={"click": 0, "cart": 1, "buy": 2}, protocol="loo", max_history=50,
                       progress=False)
    index = {item: (i % 16, i // 16) for i, item in enumerate(prepared.item_ids)}
    tokenizer = GamerTokenizerFast.from_items(index, prepared.metadata["behaviors"], codebook_size=[16, 1024])
    torch.manual_seed(0)
    config = GamerConfig.from_preset("tiny", tokenizer=tokenizer, cross_level_layers=[0, 1])
    model = GamerForCausalLM(config)  # tiny preset: no dropout
    for split in ("train", "validation"):
        model.train(split == "train")  # as the Trainer trains and evaluates
        rows = list(prepared.splits[split].select(range(48)))
        padded, packed = GamerCollator(tokenizer)(rows), GamerCollator(tokenizer, pack=True)(rows)
        assert packed["input_ids"].numel() < 0.7 * padded["input_ids"].numel(), split  # real lengths vary
        gradients = []
        for batch in (padded, packed):
            model.zero_grad()
            loss = model(**batch).loss
            loss.backward()
            gradients.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        (padded_loss, padded_grads), (packed_loss, packed_grads) = gradients
        assert torch.allclose(packed_loss, padded_loss, atol=1e-5)
        assert len(packed_grads) == len(padded_grads)
        for a, b in zip(packed_grads, padded_grads):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def _mapped(array: np.ndarray) -> bool:
    while array is not None and not isinstance(array, mmap.mmap):
        array = array.base
    return array is not None


@pytest.mark.parametrize("max_history", [None, 2])
def test_a_loaded_tokenizer_collates_from_its_mapped_code_table(synthetic_prepared, levels, loop_collator, tmp_path,
                                                                max_history) -> None:
    """The saved index is memory-mapped in its narrow dtype and is the collator's only item table; batches equal
    the loop collator's over the in-memory tokenizer, and the gathered tokens equal the old int64 token table."""
    index = {item: (i % 5, 299 - i) for i, item in enumerate(synthetic_prepared.item_ids)}
    built = GamerTokenizerFast.from_items(index, levels, codebook_size=[5, 300])  # level 2 needs int16
    built.save_pretrained(tmp_path)
    loaded = GamerTokenizerFast.from_pretrained(tmp_path)
    codes = loaded.item_index.codes
    assert _mapped(codes) and codes.dtype == np.int16
    old = np.full((len(codes) + 1, 2), loaded.pad_token_id, dtype=np.int64)  # the collator's table before
    old[:-1] = codes.astype(np.int64) + np.asarray(loaded.code_token_offsets)
    rows = np.r_[np.arange(len(codes)), len(codes) - 1, 0]
    assert np.array_equal(loaded.item_tokens(rows), old[rows]) and loaded.item_tokens(rows).dtype == np.int64
    collator = GamerCollator(loaded, max_history=max_history)
    assert not any(isinstance(value, np.ndarray) and value.size >= len(codes)  # no copy of the code table
                   for value in vars(collator._token_table()).values())
    _assert_same(collator, loop_collator(built, max_history=max_history), _batches(synthetic_prepared, 41))
