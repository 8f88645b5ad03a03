from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from gamer_hf.semantic_ids.kmeans import (
    FIT_SAMPLE,
    SAMPLED_ABOVE,
    balanced_assign,
    balanced_assign_points,
    fit_kmeans,
    nearest_centers,
    squared_distances,
)


def test_squared_distances_match_brute_force(blobs: np.ndarray) -> None:
    centers = blobs[:5]
    expected = ((blobs[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(blobs, centers), expected, rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(nearest_centers(blobs, centers, chunk=7), expected.argmin(1))


@pytest.mark.parametrize("balanced", [False, True])
def test_fit_kmeans_shapes_and_labels(blobs: np.ndarray, balanced: bool) -> None:
    result = fit_kmeans(blobs, 8, seed=0, balanced=balanced)
    assert result.centers.shape == (8, blobs.shape[1])
    assert result.labels.shape == (len(blobs),)
    assert result.labels.min() >= 0 and result.labels.max() < 8


def test_plain_kmeans_recovers_separated_blobs(blobs: np.ndarray) -> None:
    labels = fit_kmeans(blobs, 8, seed=0).labels
    sizes = sorted(np.bincount(labels, minlength=8).tolist(), reverse=True)
    assert sizes == [200, 120, 80, 60, 50, 40, 30, 20]


def test_balanced_kmeans_caps_cluster_sizes(blobs: np.ndarray) -> None:
    labels = fit_kmeans(blobs, 8, seed=0, balanced=True).labels
    counts = np.bincount(labels, minlength=8)
    assert counts.max() <= math.ceil(len(blobs) / 8)
    assert counts.sum() == len(blobs)


@pytest.mark.parametrize("n_points,n_clusters", [(5, 8), (8, 8)])
def test_fewer_points_than_clusters_gives_each_point_a_code(n_points: int, n_clusters: int) -> None:
    x = np.arange(n_points * 2, dtype=np.float32).reshape(n_points, 2)
    result = fit_kmeans(x, n_clusters)
    assert len(result.centers) == n_points
    assert len(np.unique(result.labels)) == n_points
    np.testing.assert_allclose(result.centers[result.labels], x)


def test_duplicate_points_do_not_break_kmeans() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)  # 30 points, 3 distinct
    result = fit_kmeans(x, 16)
    assert len(result.centers) == 3
    assert len(np.unique(result.labels)) == 3


def test_balanced_assign_respects_capacity_and_prefers_near_clusters() -> None:
    # Three points all nearest to cluster 0, capacity 1: the closest keeps it, the others move on.
    dist = np.array([[0.1, 5.0, 9.0], [0.2, 1.0, 9.0], [0.3, 8.0, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(balanced_assign(dist, 1), [0, 1, 2])


def test_balanced_assign_rejects_impossible_capacity() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        balanced_assign(np.zeros((5, 2), dtype=np.float32), 2)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros(4)])
def test_fit_kmeans_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        fit_kmeans(bad, 2)


def test_chunked_capacitated_assignment_equals_the_full_matrix_one(blobs: np.ndarray) -> None:
    centers = blobs[::75]
    expected = balanced_assign(squared_distances(blobs, centers), 80)
    np.testing.assert_array_equal(balanced_assign_points(blobs, centers, 80, chunk=7), expected)


@pytest.mark.parametrize("balanced", [False, True])
def test_sampled_path_agrees_with_full_batch(blobs: np.ndarray, balanced: bool) -> None:
    full = fit_kmeans(blobs, 8, seed=0, balanced=balanced, sampled=False)
    mini = fit_kmeans(blobs, 8, seed=0, balanced=balanced, sampled=True)
    assert adjusted_rand_score(full.labels, mini.labels) > 0.95
    if balanced:
        assert np.bincount(mini.labels, minlength=8).max() <= math.ceil(len(blobs) / 8)


def test_sampled_is_the_default_only_past_the_threshold(blobs: np.ndarray) -> None:
    assert len(blobs) <= SAMPLED_ABOVE
    default, full = fit_kmeans(blobs, 8, seed=3, balanced=True), fit_kmeans(blobs, 8, seed=3, balanced=True, sampled=False)
    np.testing.assert_array_equal(default.labels, full.labels)


@pytest.mark.parametrize("balanced", [False, True])
def test_sampled_path_fits_on_a_sample_and_assigns_every_point(balanced: bool) -> None:
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=8.0, size=(4, 8))
    x = (centers[rng.integers(0, 4, 3000)] + rng.normal(size=(3000, 8))).astype(np.float32)
    assert len(x) > FIT_SAMPLE * 4  # the fit really reads a sample
    full = fit_kmeans(x, 4, seed=0, balanced=balanced, sampled=False)
    sampled = fit_kmeans(x, 4, seed=0, balanced=balanced, sampled=True)
    assert adjusted_rand_score(full.labels, sampled.labels) > 0.9
    counts = np.bincount(sampled.labels, minlength=4)
    if balanced:
        assert counts.max() <= math.ceil(len(x) / 4)
    np.testing.assert_allclose(sampled.centers, np.stack([x[sampled.labels == k].mean(0) for k in range(4)]),
                               rtol=1e-4, atol=1e-4)  # the centers are the means of every point assigned
