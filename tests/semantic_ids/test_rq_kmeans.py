from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.semantic_ids.report import level_stats
from gamer_hf.semantic_ids.rq_kmeans import RQKMeans, per_level_sizes


@pytest.mark.parametrize("sizes", [[8, 8, 8], [16, 8, 4]])
@pytest.mark.parametrize("balanced", [False, True])
def test_codes_shape_and_ranges(blobs: np.ndarray, sizes: list[int], balanced: bool) -> None:
    codes = RQKMeans(len(sizes), sizes, balanced=balanced, seed=0).fit_encode(blobs)
    assert codes.shape == (len(blobs), len(sizes))
    assert codes.dtype == np.int64
    for level, size in enumerate(sizes):
        assert 0 <= codes[:, level].min() and codes[:, level].max() < size


@pytest.mark.parametrize("balanced", [False, True])
def test_same_seed_same_codes(blobs: np.ndarray, balanced: bool) -> None:
    first = RQKMeans(3, 8, balanced=balanced, seed=3).fit_encode(blobs)
    second = RQKMeans(3, 8, balanced=balanced, seed=3).fit_encode(blobs)
    np.testing.assert_array_equal(first, second)


def test_each_level_reduces_reconstruction_error(blobs: np.ndarray) -> None:
    rq = RQKMeans(3, 8, seed=0)
    codes = rq.fit_encode(blobs)
    errors = []
    for depth in range(1, 4):
        partial = sum(rq.codebooks[level][codes[:, level]] for level in range(depth))
        errors.append(float(((blobs - partial) ** 2).sum()))
    assert errors[0] > errors[1] > errors[2]
    np.testing.assert_allclose(rq.decode(codes), partial, rtol=1e-5)


def test_encode_reproduces_plain_fit_codes(blobs: np.ndarray) -> None:
    rq = RQKMeans(2, 8, seed=0)
    fitted = rq.fit_encode(blobs)
    np.testing.assert_array_equal(rq.encode(blobs), fitted)


def test_balanced_uses_codebooks_more_evenly(blobs: np.ndarray) -> None:
    plain = RQKMeans(2, 8, seed=0).fit_encode(blobs)
    balanced = RQKMeans(2, 8, balanced=True, seed=0).fit_encode(blobs)
    plain_entropy = level_stats(plain, [8, 8], 2)[0].normalized_entropy
    balanced_entropy = level_stats(balanced, [8, 8], 2)[0].normalized_entropy
    assert balanced_entropy > plain_entropy
    assert np.bincount(balanced[:, 0]).max() < np.bincount(plain[:, 0]).max()


def test_encode_before_fit_raises() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        RQKMeans(2, 4).encode(np.zeros((3, 2), dtype=np.float32))


@pytest.mark.parametrize(
    "size,levels,message", [([4, 4], 3, "lists 2 sizes"), (0, 2, ">= 1"), (4, 0, "num_levels")]
)
def test_per_level_sizes_validation(size, levels: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_level_sizes(size, levels)
