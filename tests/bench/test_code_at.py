"""recipes/bench/code_at.py: the baseline package the A/B benchmarks (catalog_scale.py, data_pipeline.py,
rerank_speed.py, train_stream.py) run beside today's code is the commit's, model code included, and the rounds they
run the codes in."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest


def test_package_at_puts_the_commits_gamer_hf_and_its_model_code_first_on_the_path(tmp_path: Path, bench_script) -> None:
    code = bench_script("code_at.py").package_at("HEAD", tmp_path / "code")
    assert (code / "gamer_hf" / "modeling" / "item_index_gamer.py").is_file()  # placed as setup.py maps it
    probe = ("import importlib.util; print(importlib.util.find_spec('gamer_hf').origin); "
             "print(importlib.util.find_spec('gamer_hf.modeling').origin)")
    env = bench_script("code_at.py").child_env(code)
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
                           cwd=tmp_path).stdout.split()
    # The extracted copy, not this tree's editable install: gamer_hf.modeling too, which the editable install maps
    # to this tree's modeling/ when the copy lacks it.
    assert [Path(origin).is_relative_to(code) for origin in found] == [True, True]


@pytest.mark.parametrize("codes", [["baseline", "this tree"], ["baseline", "abc1234", "this tree"]])
def test_every_round_runs_each_code_once_and_each_goes_first_as_often(bench_script, codes) -> None:
    code_at = bench_script("code_at.py")
    rounds = [code_at.round_order(codes, repeat) for repeat in range(2 * len(codes))]
    assert all(sorted(order) == sorted(codes) for order in rounds)
    assert Counter(order[0] for order in rounds) == dict.fromkeys(codes, 2)
    assert rounds[0] == codes and (len(codes) > 2 or rounds[1] == codes[::-1])  # two codes alternate


def test_packages_are_extracted_once_and_this_tree_comes_last(bench_script, tmp_path, monkeypatch) -> None:
    code_at = bench_script("code_at.py")
    codes = code_at.packages({"baseline": "HEAD"}, tmp_path)
    assert list(codes) == ["baseline", code_at.THIS_TREE] and codes[code_at.THIS_TREE] is None
    assert code_at.child_env(None) == {}
    monkeypatch.setattr(code_at, "package_at", lambda *_: pytest.fail("extracted again"))
    assert code_at.packages({"baseline": "HEAD"}, tmp_path) == codes  # reused from the folder
