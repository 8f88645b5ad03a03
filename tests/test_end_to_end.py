"""The whole job, events to measured recommendations: the quickstart on synthetic data, and the same
pipeline on the real retailrocket_cml log when GAMER_HF_DATA_DIR is set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModel, AutoModelForCausalLM

from gamer_hf.cli import main
from gamer_hf.cli.evaluate import EvaluateArguments, evaluate_checkpoint
from gamer_hf.cli.semantic_ids import SemanticIdArguments
from gamer_hf.cli.semantic_ids import run as build_tokenizer
from gamer_hf.data import prepare
from gamer_hf.loading import load_gamer
from gamer_hf.training import TrainArguments, train


def _target_ndcg(results: dict, model: str) -> float:
    [row] = [r for r in results["results"] if r["name"] == model]
    return row["metrics"][results["target_behavior"]]["NDCG@10"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quickstart")
    code = main([
        "quickstart", "--work_dir", str(root / "work"), "--output_dir", str(root / "gamer"),
        "--num_users", "700", "--num_items", "150", "--preset", "tiny", "--num_train_epochs", "5",
        "--learning_rate", "3e-3", "--max_eval_cases", "2000",
    ])
    assert code == 0
    return root


def test_quickstart_beats_popularity_and_shows_repeat(quickstart: Path, capsys) -> None:
    results = json.loads((quickstart / "gamer" / "eval_results.json").read_text())
    names = [r["name"] for r in results["results"]]
    assert names[:1] == ["GAMER"] and {"MostPopular", "Repeat", "GAMER+rerank", "Repeat+learned"} <= set(names)
    gamer, popular, repeat = (_target_ndcg(results, name) for name in ("GAMER", "MostPopular", "Repeat"))
    assert gamer > popular, (gamer, popular)
    assert 0.0 < repeat <= 1.0
    assert (quickstart / "gamer" / "eval_results.md").read_text().count("| Repeat |") >= 3
    assert (quickstart / "work" / "quickstart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (quickstart / "gamer" / "gamer_training.json").is_file()


@pytest.mark.parametrize(("split", "rerank", "reranked"), [("test", False, False), ("validation", True, False)])
def test_evaluate_reranks_only_with_a_held_out_split(quickstart: Path, tmp_path: Path, split, rerank, reranked) -> None:
    """The rerankers are fit on validation cases: never when validation is the split being scored, or when off."""
    report = evaluate_checkpoint(EvaluateArguments(
        model=str(quickstart / "gamer"), data=str(quickstart / "work" / "prepared"), split=split, rerank=rerank,
        max_cases=60, out=str(tmp_path),
    ), progress=False)
    names = [result.name for result in report.results]
    assert ({"GAMER+rerank", "Repeat+learned"} <= set(names)) == reranked and "GAMER" in names
    assert (tmp_path / "eval_results.json").is_file()


def test_evaluate_needs_beams_for_full_lists(quickstart: Path) -> None:
    with pytest.raises(ValueError, match="num_beams=5 cannot fill top-10 lists"):
        evaluate_checkpoint(EvaluateArguments(model=str(quickstart / "gamer"),
                                              data=str(quickstart / "work" / "prepared"), num_beams=5), progress=False)


def test_quickstart_checkpoint_loads_with_auto_classes(quickstart: Path) -> None:
    folder = quickstart / "gamer"
    assert type(AutoModel.from_pretrained(folder)).__name__ == "GamerModel"
    model = AutoModelForCausalLM.from_pretrained(folder)
    _, tokenizer = load_gamer(folder)
    history = [(tokenizer.target_behavior, tokenizer.item_ids[0])]
    [recs] = model.recommend(tokenizer, [history], top_k=10)
    assert len(recs) == 10 and all(item in tokenizer.item_index for item, _ in recs)


@pytest.mark.realdata
def test_pipeline_on_retailrocket(data_dir: Path, tmp_path: Path) -> None:
    """prepare (session-wise) -> chunked IDs -> a short training run -> evaluation with baselines."""
    prepared = tmp_path / "prepared"
    data = prepare(data_dir / "retailrocket_cml", protocol="session", max_history=20, out=prepared, progress=False)
    assert data.metadata["num_users"] > 1000 and data.metadata["num_items"] > 20000
    build_tokenizer(SemanticIdArguments(data=str(prepared), out=str(tmp_path / "tokenizer"), method="cid"))
    result = train(TrainArguments(
        data=str(prepared), tokenizer=str(tmp_path / "tokenizer"), output_dir=str(tmp_path / "gamer"),
        preset="tiny", max_steps=30, per_device_train_batch_size=32, learning_rate=3e-3, disable_tqdm=True,
        eval_steps=30, save_steps=30,
    ))
    assert result.global_step == 30
    report = evaluate_checkpoint(EvaluateArguments(
        model=str(result.checkpoint_dir), data=str(prepared), max_cases=150, num_beams=20,
    ), progress=False)
    for model in report.results:
        for behavior, metrics in model.metrics.items():
            assert all(0.0 <= value <= 1.0 for value in metrics.values()), (model.name, behavior, metrics)
            assert metrics["HR@10"] >= metrics["NDCG@10"] and metrics["HR@10"] >= metrics["HR@1"]
    # people return to what they viewed: on this log the repeat rule finds a good share of targets
    assert report["Repeat"].merged["HR@10"] > 0.1
    # the rerankers rank the same history items (plus popular ones, and GAMER's beams for GAMER+rerank)
    assert report["Repeat+learned"].merged["HR@10"] >= report["Repeat"].merged["HR@10"] - 0.05
    assert report["GAMER+rerank"].num_cases == report["GAMER"].num_cases
    assert set(report["GAMER"].metrics) <= set(data.metadata["behaviors"])
