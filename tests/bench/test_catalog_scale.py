"""recipes/bench/catalog_scale.py's semantic-ID sections on tiny catalogues: the previous package runs the same job,
and the power-iteration check reports every variant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_package_code_puts_the_refs_gamer_hf_first_on_the_path(tmp_path: Path, bench_script) -> None:
    bench = bench_script("catalog_scale.py")
    code = bench._package_code("HEAD", tmp_path / "code")
    assert (code / "gamer_hf" / "modeling" / "item_index_gamer.py").is_file()  # placed as setup.py maps it
    found = subprocess.run([sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('gamer_hf').origin)"],
                           capture_output=True, text=True, check=True, env={"PYTHONPATH": str(code)},
                           cwd=tmp_path).stdout
    assert Path(found.strip()).is_relative_to(code)  # the extracted copy, not this tree's editable install


def test_power_iteration_section_reports_each_variant(bench_script) -> None:
    bench = bench_script("catalog_scale.py")
    (row,) = bench.power_iteration_section([800], ["sklearn", "2"])
    assert row["items"] == 800 and row["counts_nnz"] > 0
    assert [variant["variant"] for variant in row["variants"]] == ["sklearn", "2"]
    for variant in row["variants"]:
        assert len(variant["collision_rate_per_level"]) == 3 and variant["neighbour_agreement"] > variant["chance"]


def test_jobs_run_outside_the_repository(bench_script) -> None:
    """`python -c` puts its working folder first on sys.path: in the repository, this tree's gamer_hf would
    shadow the baseline's copy."""
    bench = bench_script("catalog_scale.py")
    where = bench._run_json("import json, os, sys; print(json.dumps({'cwd': os.getcwd()}))")
    assert not Path(where["cwd"]).resolve().is_relative_to(bench.ROOT)
