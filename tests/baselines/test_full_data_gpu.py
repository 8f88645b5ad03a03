"""recipes/bench/full_data_gpu.py with its --tiny budget on CPU: every model of the GPU comparison, one table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from gamer_hf.data import generate_synthetic, write_synthetic

BENCH = Path(__file__).resolve().parents[2] / "recipes" / "bench"


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_full_budget_is_every_user_with_history_50() -> None:
    gpu = _load("bench_full_data_gpu_budget", "full_data_gpu.py")
    budget = gpu.gpu_budget(_load("bench_quality_for_gpu_budget", "quality.py"))
    assert (budget.max_users, budget.max_test_cases, budget.max_history) == (None, None, 50)
    assert budget.max_train_seconds * 3 <= 300  # three learned models inside the 9-minute target


@pytest.mark.slow
def test_tiny_run_writes_the_table_with_the_device_named(tmp_path: Path, monkeypatch) -> None:
    events, items = generate_synthetic(num_users=80, num_items=40, seed=1)
    write_synthetic(tmp_path / "data" / "synthetic", events, items)
    quality = _load("bench_quality_for_gpu", "quality.py")
    gpu = _load("bench_full_data_gpu", "full_data_gpu.py")
    monkeypatch.setitem(quality.DATASETS, "synthetic", "loo")
    args = gpu.parse_args(["--tiny", "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work"),
                           "--out", str(tmp_path / "out"), "--device", "cpu"])  # fmt: skip
    results = gpu.run(args, quality=quality, dataset="synthetic")
    assert sorted(results["runs"]["synthetic"]["0"]) == sorted(gpu.MODELS)
    table = (tmp_path / "out" / "full_data_gpu.md").read_text()
    assert gpu.device_name("cpu") in table and "budget gpu_full-tiny" in table
    assert all(f"| {model} | 1 |" in table for model in gpu.MODELS)
