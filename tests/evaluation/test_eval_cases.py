"""Test-case rows from the data pipeline: parsing, id types, and errors that name the row."""

from __future__ import annotations

import datasets
import pytest

from gamer_hf.evaluation import EvalCase, as_cases, ordered_behaviors, target_behavior


def test_dataset_and_dicts_give_the_same_cases(case_rows: list[dict[str, object]]) -> None:
    from_dataset = as_cases(datasets.Dataset.from_list(case_rows))
    assert from_dataset == as_cases(case_rows)
    first = from_dataset[0]
    assert first.history == [("click", "i1"), ("click", "i2"), ("buy", "i2")]
    assert as_cases(from_dataset) == from_dataset  # built cases pass through


def test_ids_become_str_and_targets_a_set_in_order() -> None:
    case = EvalCase.from_row(
        {"user_id": 7, "history_behaviors": ["click"], "history_items": [12],
         "target_behavior": "buy", "target_items": [3, 4, 3]}
    )  # fmt: skip
    assert case.user_id == "7" and case.history_items == ("12",) and case.target_items == ("3", "4")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"history_items": ["a"]}, r"row 2 \(user 'u'\): history_behaviors has 2 entries but history_items has 1"),
        ({"target_items": []}, r"row 2 \(user 'u'\): target_items is empty"),
        ({"target_behavior": None}, "lacks columns"),
    ],
)
def test_bad_rows_name_the_row(change: dict[str, object], message: str) -> None:
    row = {"user_id": "u", "history_behaviors": ["click", "buy"], "history_items": ["a", "b"],
           "target_behavior": "buy", "target_items": ["c"]}  # fmt: skip
    row.update(change)
    if row["target_behavior"] is None:
        del row["target_behavior"]
    good = dict(row, history_items=["a", "b"], target_items=["c"], target_behavior="buy")
    with pytest.raises(ValueError, match=message):
        as_cases([good, good, row])


def test_target_behavior_is_the_unique_top_level(behaviors: dict[str, int]) -> None:
    assert target_behavior(behaviors) == "buy"
    assert ordered_behaviors({"buy": 4, "click": 1, "fav": 2, "cart": 2}) == ["click", "fav", "cart", "buy"]
    with pytest.raises(ValueError, match="share the top level"):
        target_behavior({"click": 1, "cart": 3, "buy": 3})
    with pytest.raises(ValueError, match="empty"):
        target_behavior({})


def test_target_behavior_is_the_tokenizers_rule() -> None:
    """The evaluation's target behavior comes from the same layout rule as the tokenizer's (table order aside)."""
    from gamer_hf import GamerTokenizerFast

    table = {"buy": 3, "click": 1, "cart": 2}
    tok = GamerTokenizerFast.from_items({"a": (0, 1), "b": (1, 0)}, behaviors=table, codebook_size=2)
    assert target_behavior(table) == tok.target_behavior == "buy"
