"""recipes/bench/semantic_id_quality.py on a tiny synthetic dataset: every cell's ID figures, GAMER per cell, resume."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gamer_hf.data import generate_synthetic, write_synthetic

@pytest.mark.slow
def test_ablation_end_to_end_and_resume(tmp_path: Path, monkeypatch, bench_script) -> None:
    events, items = generate_synthetic(num_users=80, num_items=40, seed=1)
    write_synthetic(tmp_path / "data" / "synthetic", events, items)
    bench = bench_script("semantic_id_quality.py")
    quality = bench.quality
    monkeypatch.setitem(quality.DATASETS, "synthetic", "session")
    budget = replace(quality.BUDGETS["quick"], epochs=1, max_users=None, max_validation_cases=20, max_test_cases=30,
                     sid_levels=2, sid_codebook=4, num_beams=10)  # fmt: skip
    cells = ["ppmi/plain/reassign", "item2vec/plain/reassign+profile"]
    argv = ["--datasets", "synthetic", "--cells", *cells, "--train", "--data-dir", str(tmp_path / "data"),
            "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--device", "cpu"]  # fmt: skip
    results = bench.run(bench.parse_args(argv), budget=budget)
    data = results["datasets"]["synthetic"]
    assert list(data["cells"]) == cells
    assert results["select_by"] == "ndcg"  # each cell's GAMER is selected as the quality bench's are
    for cell in data["cells"].values():
        ids = cell["ids"]
        assert len(ids["collision_rate_per_level"]) == 2 and 0 <= ids["coverage"]["fallback_share_of_seen"] <= 1
        assert ids["neighbour_agreement"]["items"] > 0
        held = ids["held_out_agreement"]
        assert 0 < held["cases"] <= 20 and 0.0 <= held["chance"] <= 1.0 and 0.0 <= held["agreement"] <= 1.0
        assert len(cell["gamer"]["result"]["per_case"]["NDCG@10"]) == len(data["cases"]["case_slices"]) == 30
    profiled = data["cells"][cells[1]]["ids"]["coverage"]
    assert profiled["profile_items"] == profiled["seen_alone"] and "held_out_r2" in profiled["profile_map"]
    assert "profile_items" not in data["cells"][cells[0]]["ids"]["coverage"]
    comparison = data["cells"][cells[1]]["comparison"]
    assert comparison["all"]["cases"] == sum(b == "buy" for b in data["cases"]["case_behaviors"])
    assert "vs_reference" in comparison["all"] and "vs_reference" not in data["cells"][cells[0]]["comparison"]["all"]
    markdown = (tmp_path / "out" / "semantic_id_quality.md").read_text()
    assert f"| {cells[1]} |" in markdown and "vs reference" in markdown and "profile rows (held-out R^2)" in markdown
    # resume keeps finished cells (their timings stay as recorded)
    stored = json.loads((tmp_path / "out" / "semantic_id_quality.json").read_text())
    again = bench.run(bench.parse_args([*argv, "--resume"]), budget=budget)
    assert again["datasets"]["synthetic"]["cells"][cells[1]]["gamer"]["train_seconds"] == \
        stored["datasets"]["synthetic"]["cells"][cells[1]]["gamer"]["train_seconds"]


def test_held_out_agreement_by_hand(bench_script) -> None:
    from gamer_hf.evaluation import as_cases

    bench = bench_script("semantic_id_quality.py")
    index = {"a": (0, 0), "b": (0, 1), "c": (1, 0), "d": (1, 1)}
    rows = [("a", ["b"]), ("a", ["c"]), ("c", ["d", "a"]), ("b", ["b"])]  # the last one is a repeat case
    cases = as_cases([{"user_id": str(i), "history_behaviors": ["click"], "history_items": [last],
                       "target_behavior": "buy", "target_items": targets} for i, (last, targets) in enumerate(rows)])
    figures = bench.held_out_agreement(index, cases)
    assert figures["cases"] == 3 and figures["agreement"] == pytest.approx(2 / 3)
    assert figures["chance"] == pytest.approx((0.5 + 0.5 + (1 - 0.5**2)) / 3)
