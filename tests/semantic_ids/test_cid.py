from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.semantic_ids.cid import chunked_ids, min_cid_levels

IDS = [f"item{i}" for i in range(300)]


@pytest.mark.parametrize("base,levels", [(4, 5), (64, 2), (17, None)])
def test_codes_are_distinct_digits_in_range(base: int, levels: int | None) -> None:
    codes = chunked_ids(IDS, base=base, num_levels=levels)
    assert codes.shape == (len(IDS), levels or min_cid_levels(len(IDS), base))
    assert codes.min() >= 0 and codes.max() < base
    assert len(np.unique(codes, axis=0)) == len(IDS)


def test_digits_spell_a_permutation_of_item_ranks() -> None:
    codes = chunked_ids(IDS, base=8, num_levels=3, seed=1)
    numbers = codes @ np.array([64, 8, 1])
    assert sorted(numbers.tolist()) == list(range(len(IDS)))


def test_seed_controls_the_shuffle_and_input_order_does_not() -> None:
    base = chunked_ids(IDS, base=8, seed=0)
    np.testing.assert_array_equal(base, chunked_ids(IDS, base=8, seed=0))
    assert not np.array_equal(base, chunked_ids(IDS, base=8, seed=1))
    reversed_codes = chunked_ids(IDS[::-1], base=8, seed=0)
    np.testing.assert_array_equal(reversed_codes[::-1], base)


@pytest.mark.parametrize(
    "num_items,base,expected", [(1, 2, 1), (64, 64, 1), (65, 64, 2), (4096, 64, 2), (30113, 64, 3)]
)
def test_min_levels(num_items: int, base: int, expected: int) -> None:
    assert min_cid_levels(num_items, base) == expected


def test_too_few_levels_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="num_levels >= 3"):
        chunked_ids(IDS, base=8, num_levels=2)


@pytest.mark.parametrize("ids,base,message", [(["a", "a"], 4, "duplicates"), (["a"], 1, "base must be >= 2")])
def test_invalid_input(ids: list[str], base: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chunked_ids(ids, base=base)
