"""Sampling users of a split and collecting the training items, in Arrow batches."""

from __future__ import annotations

import datasets
import pytest

from gamer_hf.errors import ConfigurationError
from gamer_hf.evaluation import distinct_items, items_seen, sample_users
from gamer_hf.evaluation import user_sample


@pytest.fixture
def split(case_rows) -> datasets.Dataset:
    """The seven cases twice over (each user has two cases, apart), as a split is read from disk."""
    second = [{**row, "target_items": row["target_items"][::-1]} for row in case_rows]
    return datasets.Dataset.from_list(case_rows + second)


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_sample, "BATCH_ROWS", 3)  # several Arrow batches even on a few rows


def test_a_sample_keeps_every_case_of_its_users_in_order_and_is_seeded(split):
    sample = sample_users(split, 3, seed=1)
    users = set(sample["user_id"])
    assert len(users) == 3
    assert sample["user_id"] == [user for user in split["user_id"] if user in users]  # all their cases, in order
    assert sample_users(split, 3, seed=1)["user_id"] == sample["user_id"]
    assert any(set(sample_users(split, 3, seed=other)["user_id"]) != users for other in range(2, 6))


def test_every_user_fits_and_a_count_below_one_is_refused(split):
    assert sample_users(split, None, seed=0) is split
    assert sample_users(split, 7, seed=0) is split
    with pytest.raises(ConfigurationError, match="max_test_users must be >= 1"):
        sample_users(split, 0, seed=0)


def test_distinct_items_reads_only_the_rows_of_a_selection(split):
    assert distinct_items(split, "history_items") == items_seen(split["history_items"])
    picked = split.select([0, 3])
    assert distinct_items(picked, "target_items") == {"i2", "i7"}
