"""recipes/bench/full_data_gpu.py with its --tiny budget on CPU: every model of the GPU comparison, one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gamer_hf.data import generate_synthetic, write_synthetic

def test_the_full_budget_is_every_user_with_history_50(bench_script) -> None:
    budget = bench_script("full_data_gpu.py").gpu_budget()
    assert (budget.max_users, budget.max_test_cases, budget.max_history) == (None, 5000, 50)
    assert budget.epochs <= 4 and budget.select_by == "ndcg"  # a step budget sized for the 9-minute target


@pytest.mark.slow
def test_tiny_run_writes_the_table_with_the_device_named(tmp_path: Path, monkeypatch, bench_script) -> None:
    events, items = generate_synthetic(num_users=80, num_items=40, seed=1)
    write_synthetic(tmp_path / "data" / "synthetic", events, items)
    gpu = bench_script("full_data_gpu.py")
    monkeypatch.setitem(gpu.quality.DATASETS, "synthetic", "loo")
    args = gpu.parse_args(["--tiny", "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work"),
                           "--out", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    results = gpu.run(args, dataset="synthetic")
    rows = results["runs"]["synthetic"]["0"]  # the models and the side rows scored with them (history excluded)
    assert sorted(rows) == sorted(gpu.MODELS + [m for m in gpu.quality.SIDE_ROWS if gpu.quality._base(m) in gpu.MODELS])
    table = (tmp_path / "out" / "full_data_gpu.md").read_text()
    assert gpu.device_name("cpu") in table and "budget gpu_full-tiny" in table
    assert all(f"| {model} | 1 |" in table for model in gpu.MODELS)
    # a run stopped by the GPU session's time limit: the table is rendered from what quality.json holds
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())
    del saved["runs"]["synthetic"]["0"]["SASRec+behavior"]
    (tmp_path / "out" / "quality.json").write_text(json.dumps(saved))
    (tmp_path / "out" / "full_data_gpu.md").unlink()
    monkeypatch.setattr(gpu, "DATASET", "synthetic")
    gpu.main(["--render", "--tiny", "--out", str(tmp_path / "out"), "--device", "cpu"])
    table = (tmp_path / "out" / "full_data_gpu.md").read_text()
    assert "stopped by its time limit before SASRec+behavior finished" in table and "| GAMER | 1 |" in table
