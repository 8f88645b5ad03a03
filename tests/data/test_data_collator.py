"""GamerCollator against the tokenizer contract: padding, labels on code tokens, eval-loss targets."""

from __future__ import annotations

import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.data import GamerCollator, prepare

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
