"""recipes/bench/catalog_scale.py's old-vs-new semantic-ID job runs where the previous ref's package is what it imports
(the package itself: tests/bench/test_code_at.py; the power-iteration section's parts, `power_svd` and
`neighbour_agreement`, are tested in tests/semantic_ids)."""

from __future__ import annotations

from pathlib import Path


def test_jobs_run_outside_the_repository(bench_script) -> None:
    """`python -c` puts its working folder first on sys.path: in the repository, this tree's gamer_hf would
    shadow the baseline's copy."""
    bench = bench_script("catalog_scale.py")
    where = bench._run_json("import json, os, sys; print(json.dumps({'cwd': os.getcwd()}))")
    assert not Path(where["cwd"]).resolve().is_relative_to(bench.ROOT)
