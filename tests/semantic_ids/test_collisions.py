from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.semantic_ids.collisions import collision_ranks, prefix_keys, resolve_collisions, row_keys

CODES = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [1, 0]])


def test_collision_ranks_follow_input_order() -> None:
    rank, size = collision_ranks(CODES)
    np.testing.assert_array_equal(rank, [0, 1, 0, 2, 1, 0])
    np.testing.assert_array_equal(size, [3, 3, 2, 3, 2, 1])


def test_append_adds_a_level_sized_by_the_largest_group() -> None:
    result = resolve_collisions(CODES, [4, 4], "append")
    assert result.applied == "append"
    assert result.codebook_sizes == [4, 4, 3]
    np.testing.assert_array_equal(result.codes[:, :2], CODES)  # semantic prefixes untouched
    np.testing.assert_array_equal(result.codes[:, 2], [0, 1, 0, 2, 1, 0])
    assert len(np.unique(result.codes, axis=0)) == len(CODES)


def test_reassign_moves_later_group_members_to_free_last_codes() -> None:
    result = resolve_collisions(CODES, [4, 4], "reassign")
    assert result.applied == "reassign" and result.codebook_sizes == [4, 4]
    # prefix 0 uses last code 1; free codes 0, 2 go to the 2nd and 3rd copies. Prefix 2 uses 3; free 0.
    np.testing.assert_array_equal(result.codes, [[0, 1], [0, 0], [2, 3], [0, 2], [2, 0], [1, 0]])


@pytest.mark.parametrize("strategy", ["append", "reassign"])
def test_distinct_codes_are_left_alone(strategy: str) -> None:
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    result = resolve_collisions(codes, [2, 2], strategy)
    assert result.applied == "none" and result.codebook_sizes == [2, 2]
    np.testing.assert_array_equal(result.codes, codes)


@pytest.mark.parametrize("strategy", ["append", "reassign"])
def test_random_codes_become_distinct(strategy: str) -> None:
    codes = np.random.default_rng(0).integers(0, 6, size=(150, 3))
    result = resolve_collisions(codes, [6, 6, 16], strategy)  # 16 last codes: room for every prefix
    assert len(np.unique(result.codes, axis=0)) == len(codes)
    assert (result.codes.max(0) < np.array(result.codebook_sizes)).all()


def test_reassign_fails_clearly_when_a_prefix_is_full() -> None:
    with pytest.raises(ValueError, match="uses all 2 last-level codes"):
        resolve_collisions(np.array([[0, 0], [0, 1], [0, 1]]), [1, 2], "reassign")


@pytest.mark.parametrize(
    "codes,sizes,strategy,message",
    [(CODES, [4, 4], "drop", "unknown collision strategy"), (CODES, [4], "append", "do not match")],
)
def test_invalid_arguments(codes: np.ndarray, sizes: list[int], strategy: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_collisions(codes, sizes, strategy)


@pytest.mark.parametrize("widths", [[4, 4, 4], [2**40, 2**40, 3]])  # the second overflows int64 packing
def test_prefix_keys_group_and_order_rows_as_np_unique(widths: list[int]) -> None:
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, width, 500) for width in widths], axis=1)
    codes[250:] = codes[:250]  # plenty of equal rows and prefixes
    for level, key in enumerate(prefix_keys(codes), start=1):
        _, expected = np.unique(codes[:, :level], axis=0, return_inverse=True)
        _, got = np.unique(key, return_inverse=True)
        np.testing.assert_array_equal(got.reshape(-1), expected.reshape(-1))  # same groups, same sorted order
    np.testing.assert_array_equal(row_keys(codes), key)


def test_collision_ranks_equal_the_np_unique_rule_on_random_codes() -> None:
    codes = np.random.default_rng(1).integers(0, 3, (400, 3))
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    rank, size = collision_ranks(codes)
    np.testing.assert_array_equal(size, counts[inverse])
    for group in range(len(counts)):
        np.testing.assert_array_equal(rank[inverse == group], np.arange(counts[group]))  # input order


def test_prefix_keys_reject_negative_codes() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        row_keys(np.array([[0, -1]]))
