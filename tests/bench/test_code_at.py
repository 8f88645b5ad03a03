"""recipes/bench/code_at.py's `package_at`: the baseline package the A/B benchmarks (catalog_scale.py,
data_pipeline.py, rerank_speed.py) run beside today's code is the commit's, model code included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_package_at_puts_the_commits_gamer_hf_and_its_model_code_first_on_the_path(tmp_path: Path, bench_script) -> None:
    code = bench_script("code_at.py").package_at("HEAD", tmp_path / "code")
    assert (code / "gamer_hf" / "modeling" / "item_index_gamer.py").is_file()  # placed as setup.py maps it
    probe = ("import importlib.util; print(importlib.util.find_spec('gamer_hf').origin); "
             "print(importlib.util.find_spec('gamer_hf.modeling').origin)")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": str(code)}, cwd=tmp_path).stdout.split()
    # The extracted copy, not this tree's editable install: gamer_hf.modeling too, which the editable install maps
    # to this tree's modeling/ when the copy lacks it.
    assert [Path(origin).is_relative_to(code) for origin in found] == [True, True]
