"""recipes/bench/catalog_scale.py's old-vs-new semantic-ID job: the previous ref's package is what the job imports
(the power-iteration section's parts, `power_svd` and `neighbour_agreement`, are tested in tests/semantic_ids)."""

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


def test_jobs_run_outside_the_repository(bench_script) -> None:
    """`python -c` puts its working folder first on sys.path: in the repository, this tree's gamer_hf would
    shadow the baseline's copy."""
    bench = bench_script("catalog_scale.py")
    where = bench._run_json("import json, os, sys; print(json.dumps({'cwd': os.getcwd()}))")
    assert not Path(where["cwd"]).resolve().is_relative_to(bench.ROOT)
