"""`evaluate` on a log whose target behavior occurs only in the test sessions: it warns (the data report,
recorded beside the results for the model card) and fits no reranker on validation cases that hold no
target case; the reranker itself refuses zero cases with a typed error."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from gamer_hf.cli import main
from gamer_hf.data.prepare import prepare
from gamer_hf.data.synthetic import SYNTHETIC_BEHAVIORS, generate_synthetic
from gamer_hf.errors import DataError
from gamer_hf.evaluation import HistoryReranker


@pytest.fixture(scope="module")
def buy_only_in_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CLI fixtures' synthetic shop (same items), with every buy removed but one a second after each user's
    last event: the buys fall in the test sessions only."""
    events, _ = generate_synthetic(num_users=60, num_items=40, seed=0)
    others = events[events["behavior"] != "buy"]
    last = others.groupby("user_id", sort=False).tail(1)
    buys = last.assign(behavior="buy", timestamp=last["timestamp"] + 1)
    out = tmp_path_factory.mktemp("buy_only_in_test") / "prepared"
    prepare(pd.concat([others, buys]).sort_values(["user_id", "timestamp"]), behaviors=SYNTHETIC_BEHAVIORS, out=out,
            max_history=6, progress=False)
    return out


def test_evaluate_warns_and_fits_no_reranker_without_target_validation_cases(
        checkpoint: Path, buy_only_in_test: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gamer_hf"):
        assert main(["evaluate", "--model", str(checkpoint), "--data", str(buy_only_in_test), "--max_cases", "12",
                     "--num_beams", "10", "--out", str(tmp_path)]) == 0
    warned = [record.getMessage() for record in caplog.records]
    assert any("'buy' never occurs in the training sequences and has 0 validation cases" in m for m in warned)
    assert any(m.startswith("skipping GAMER+mix, GAMER+rerank and Repeat+learned: the validation split has no "
                            "case of the target behavior 'buy'") for m in warned)
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert {result["name"] for result in saved["results"]}.isdisjoint({"GAMER+mix", "GAMER+rerank", "Repeat+learned"})
    report = saved["metadata"]["data_report"]
    assert report["target_cases"]["validation"] == 0 and report["warnings"][0]["kind"] == "target_absent"


def test_reranker_refuses_zero_cases() -> None:
    with pytest.raises(DataError, match="^cannot fit a reranker on 0 cases: give it held-out cases"):
        HistoryReranker(SYNTHETIC_BEHAVIORS).fit([])
