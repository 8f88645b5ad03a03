"""The shipped `evaluate` module: loads offline by folder path and matches the direct functions.

It runs in a fresh interpreter because the Hub client and evaluate read HF_HUB_OFFLINE and their cache
folders when imported; HF_HOME points at a temporary folder so nothing leaks into the user's cache,
and HF_ENDPOINT at a closed local port so any Hub access would fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gamer_hf.evaluation import RANKING_METRIC_PATH, grouped_metrics, merge_metrics, ranking_metrics

PREDICTIONS = [["a", "b", "c"], ["c", "a", "a", "d"], ["x"], ["b", "d", "a", "e", "f", "g"]]
REFERENCES = [["b"], ["d", "a", "z"], ["y"], ["g", "a"]]
BEHAVIORS = ["buy", "click", "click", "cart"]
K_VALUES = [1, 3, 5]

SCRIPT = """
import json, sys
import evaluate
import huggingface_hub
from gamer_hf.evaluation import load_ranking_metric

args = json.loads(sys.argv[1])
by_path = evaluate.load(args["path"])
plain = by_path.compute(predictions=args["predictions"], references=args["references"], k_values=args["k_values"])
grouped = load_ranking_metric().compute(
    predictions=args["predictions"], references=args["references"], k_values=args["k_values"],
    behaviors=args["behaviors"],
)
sys.modules["gamer_hf"] = None  # as if gamer_hf were not installed
try:
    evaluate.load(args["path"], download_mode="force_redownload")
    missing = "loaded"
except ImportError as error:
    missing = str(error)
print(json.dumps({"offline": huggingface_hub.constants.HF_HUB_OFFLINE, "plain": plain, "grouped": grouped,
                  "missing": missing}))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("hf_home")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(home / "modules"),
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # fmt: skip
    args = {"path": str(RANKING_METRIC_PATH), "predictions": PREDICTIONS, "references": REFERENCES,
            "behaviors": BEHAVIORS, "k_values": K_VALUES}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(args)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_module_folder_is_shipped() -> None:
    assert (RANKING_METRIC_PATH / "gamer_ranking.py").is_file()
    assert Path(RANKING_METRIC_PATH).parent.name == "metrics"


def test_loads_offline_and_matches_direct_functions(loaded: dict) -> None:
    assert loaded["offline"] is True
    assert loaded["plain"] == pytest.approx(ranking_metrics(PREDICTIONS, REFERENCES, K_VALUES))


def test_per_behavior_and_merged_keys(loaded: dict) -> None:
    per_behavior, counts = grouped_metrics(PREDICTIONS, REFERENCES, BEHAVIORS, K_VALUES)
    per_behavior["merged"] = merge_metrics(per_behavior, counts)
    expected = dict(ranking_metrics(PREDICTIONS, REFERENCES, K_VALUES))
    for behavior, metrics in per_behavior.items():
        expected.update({f"{behavior}/{key}": value for key, value in metrics.items()})
    assert loaded["grouped"] == pytest.approx(expected)


def test_missing_package_is_named_with_its_pip_name(loaded: dict) -> None:
    assert "gamer_hf" in loaded["missing"] and "pip install gamer-hf" in loaded["missing"]
