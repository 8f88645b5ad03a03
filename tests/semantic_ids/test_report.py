from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gamer_hf.semantic_ids.collisions import resolve_collisions
from gamer_hf.semantic_ids.report import build_report, level_stats

# 4 items: two share (0, 0). Level 1 counts {0: 3, 1: 1}; level 2 counts {0: 2, 1: 1, 2: 1}.
BASE = np.array([[0, 0], [0, 0], [0, 1], [1, 2]])
SIZES = [2, 4]


@pytest.fixture
def report():
    resolved = resolve_collisions(BASE, SIZES, "append")
    return build_report("rqkmeans", BASE, resolved.codes, resolved.codebook_sizes, resolved.applied, {"quantize": 0.5})


def test_collision_figures(report) -> None:
    assert report.num_items == 4
    assert report.collision_rate == pytest.approx(0.25)  # 3 distinct tuples for 4 items
    assert report.colliding_items == 2
    assert report.max_collision_group == 2
    assert report.collision_handling == "append"
    assert report.collision_rate_after == 0.0
    assert report.num_levels == 3 and report.codebook_sizes == [2, 4, 2]


def test_level_usage_and_entropy_by_hand(report) -> None:
    first, second, extra = report.levels
    h1 = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert (first.codes_used, first.usage) == (2, 1.0)
    assert first.entropy_bits == pytest.approx(h1)
    assert first.normalized_entropy == pytest.approx(h1 / 1.0)
    assert (second.codes_used, second.usage) == (3, 0.75)
    assert second.entropy_bits == pytest.approx(1.5)
    assert second.normalized_entropy == pytest.approx(0.75)
    assert [s.distinct_prefixes for s in report.levels] == [2, 3, 4]
    assert [s.disambiguation for s in report.levels] == [False, False, True]
    # extra level: codes [0, 1, 0, 0] -> p = (3/4, 1/4), codebook of 2
    assert extra.entropy_bits == pytest.approx(h1)


def test_items_per_first_code(report) -> None:
    assert report.items_per_first_code == {"min": 1.0, "median": 2.0, "mean": 2.0, "max": 3.0}


def test_to_dict_is_json_and_table_lists_every_level(report) -> None:
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["levels"][1]["codes_used"] == 3
    assert payload["timings"] == {"quantize": 0.5}
    table = report.to_table()
    assert "rate 0.2500" in table and "largest group 2" in table
    rows = [line for line in table.splitlines() if line.strip()[:2].rstrip("*").strip().isdigit()]
    assert len(rows) == 3 and rows[-1].strip().startswith("3*")
    assert str(report) == table


def test_uniform_level_has_normalized_entropy_one() -> None:
    stats = level_stats(np.arange(8).reshape(8, 1), [8], 1)[0]
    assert stats.entropy_bits == pytest.approx(3.0) and stats.normalized_entropy == pytest.approx(1.0)


def test_out_of_range_codes_are_rejected() -> None:
    with pytest.raises(ValueError, match="level 1 has codes outside"):
        level_stats(np.array([[0], [5]]), [4], 1)


def test_collision_rate_per_prefix_level(report) -> None:
    # level 1: 2 distinct first codes for 4 items; level 2: 3 distinct tuples (the overall rate)
    assert report.collision_rate_per_level == pytest.approx([0.5, 0.25])
    assert "collision rate per prefix level (before handling): 0.5000 | 0.2500" in report.to_table()


def test_neighbour_agreement_by_hand() -> None:
    import scipy.sparse as sp

    from gamer_hf.semantic_ids.report import neighbour_agreement

    # items 0-2 share first code 0, item 3 has code 1; 0's strongest neighbours are 1 then 3, 3 only sees 2
    weights = np.zeros((5, 5))
    weights[0, 1], weights[0, 3], weights[3, 2] = 2.0, 1.0, 1.0
    first = np.array([0, 0, 0, 1, 1])
    one = neighbour_agreement(first, sp.csr_matrix(weights), neighbours=1)
    assert (one.agreement, one.items) == (0.5, 2)  # item 0: 1 of 1 agrees; item 3: 0 of 1
    assert one.chance == pytest.approx(((3 - 1) / 4 + (2 - 1) / 4) / 2)
    two = neighbour_agreement(first, sp.csr_matrix(weights), neighbours=2)
    assert two.agreement == pytest.approx((0.5 + 0.0) / 2)
    with pytest.raises(ValueError, match="does not match 4 items"):
        neighbour_agreement(first[:4], sp.csr_matrix(weights))


def _agreement_one_sort(first: np.ndarray, matrix, neighbours: int) -> tuple[float, float, int]:
    """The rule before the row blocks: every row's entries in one lexsort (weight, ties by column)."""
    rows = np.repeat(np.arange(len(first)), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    top = order[np.arange(len(order)) - matrix.indptr[rows[order]] < neighbours]
    counted = np.bincount(rows[top], minlength=len(first))
    filled = np.flatnonzero(counted)
    same = np.bincount(rows[top], weights=first[matrix.indices[top]] == first[rows[top]], minlength=len(first))
    chances = (np.bincount(first)[first[filled]] - 1) / (len(first) - 1)
    return float((same[filled] / counted[filled]).mean()), float(chances.mean()), len(filled)


@pytest.mark.parametrize("block", [1, 7, 1 << 22])  # a row per sort, rows split across blocks, one block
def test_neighbour_agreement_in_row_blocks_equals_one_sort(monkeypatch, block: int) -> None:
    import scipy.sparse as sp

    from gamer_hf.semantic_ids import report as report_module

    rng = np.random.default_rng(0)
    dense = rng.integers(0, 4, (120, 120)).astype(np.float32) / 2  # many ties, empty entries and rows
    dense[rng.random(120) < 0.2] = 0.0
    matrix = sp.csr_matrix(dense)
    first = rng.integers(0, 5, 120)
    monkeypatch.setattr(report_module, "_SORT_BLOCK", block)
    got = report_module.neighbour_agreement(first, matrix, neighbours=3)
    assert (got.agreement, got.chance, got.items) == _agreement_one_sort(first, matrix, 3)
