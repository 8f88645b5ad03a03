"""The model card: metadata the Hub accepts, every number read from the checkpoint's own files,
"not recorded" where a fact is missing, and the card as pushed loading back with ModelCard.load."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard

from gamer_hf.data.diagnostics import DataReport, DataWarning
from gamer_hf.hub import CARD_TAGS, NOT_RECORDED, build_model_card, load_template
from gamer_hf.loading import load_gamer

from .conftest import GAMER_REPO, Published

REPO_ID = "org/gamer-card"


@pytest.fixture(scope="module")
def facts(gamer_checkpoint: Path) -> dict[str, Any]:
    model, tokenizer = load_gamer(gamer_checkpoint, device="cpu")
    return {
        "model": model,
        "tokenizer": tokenizer,
        "training": json.loads((gamer_checkpoint / "gamer_training.json").read_text()),
        "evaluation": json.loads((gamer_checkpoint / "eval_results.json").read_text()),
    }


@pytest.fixture(scope="module")
def card(facts: dict[str, Any]) -> ModelCard:
    return build_model_card(facts["model"], facts["tokenizer"], REPO_ID, training=facts["training"],
                            evaluation=facts["evaluation"])


def _result(evaluation: dict[str, Any], name: str) -> dict[str, Any]:
    return next(result for result in evaluation["results"] if result["name"] == name)


def test_metadata_keeps_the_transformers_loader_and_lists_the_measured_metrics(card: ModelCard, facts) -> None:
    evaluation = facts["evaluation"]
    target = evaluation["target_behavior"]
    measured = _result(evaluation, "GAMER")["metrics"][target]

    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "other"
    assert card.data.tags == CARD_TAGS
    assert card.data.model_name == "gamer-card"
    results = {result.metric_name: result for result in card.data.eval_results}
    assert {name: result.metric_value for name, result in results.items()} == {
        f"{key} ({target})": value for key, value in measured.items()}
    split = evaluation["metadata"]["split"]
    assert {(r.task_type, r.dataset_split) for r in results.values()} == {("recommendation", split)}
    assert ModelCard(str(card)).data.to_dict() == card.data.to_dict()  # the YAML round-trips


def test_body_reports_behaviors_semantic_ids_and_training_from_gamer_training_json(card: ModelCard, facts) -> None:
    training, text = facts["training"], card.text
    for row in training["behaviors"]:
        target = "yes" if row["target"] else ""
        assert f"| {row['name']} | {row['identity']} | {row['level']} | {target} | {row['events']:,} |" in text
    report = training["semantic_ids"]["report"]
    assert f"| Method | {training['semantic_ids']['method']} |" in text
    assert f"| Collision rate before handling | {report['collision_rate']:.2%} |" in text
    for level in report["levels"]:
        assert f"| {level['level']} | {level['codebook_size']} | {level['codes_used']} | {level['usage']:.1%} |" in text
    arguments, results = training["training_arguments"], training["results"]
    assert f"| Learning rate | {arguments['learning_rate']:g} |" in text
    assert f"| Best validation loss | {results['best_eval_loss']:.4f} (step {results['best_global_step']}) |" in text
    assert f"| Users | {training['data']['num_users']:,} |" in text
    assert f"| Parameters | {facts['model'].num_parameters():,} |" in text


def test_body_compares_gamer_with_the_baselines_per_behavior(card: ModelCard, facts) -> None:
    evaluation = facts["evaluation"]
    names = [result["name"] for result in evaluation["results"]]
    assert {"GAMER", "MostPopular", "Repeat", "GAMER+rerank", "Repeat+learned"} <= set(names)
    lines = card.text.splitlines()
    for behavior in evaluation["behaviors"]:
        label = f"{behavior} (target)" if behavior == evaluation["target_behavior"] else behavior
        cells = [f"{_result(evaluation, name)['metrics'][behavior][key]:.4f}" for name in names
                 for key in ("HR@10", "NDCG@10")]
        assert f"| {label} | " + " | ".join(cells) + " |" in lines
    ndcg = {name: {b: m["NDCG@10"] for b, m in _result(evaluation, name)["metrics"].items()} for name in names}
    beaten = [f"{behavior} ({', '.join(better)})" for behavior in evaluation["behaviors"]
              if (better := [name for name in ("MostPopular", "Repeat", "Repeat+learned")
                             if ndcg[name][behavior] > ndcg["GAMER"][behavior]])]
    limitation = [line for line in lines if "rule baseline beats the plain model" in line]
    if beaten:
        assert len(limitation) == 1 and all(entry in limitation[0] for entry in beaten)
    else:
        assert limitation == []


def test_body_shows_slices_and_bootstrap_differences_to_the_best_baseline(card: ModelCard, facts) -> None:
    from gamer_hf.evaluation import EvaluationReport

    evaluation = facts["evaluation"]
    report = EvaluationReport.from_dict(evaluation)
    target, lines = report.target_behavior, card.text.splitlines()
    assert "| Model | repeat | explore | cold |" in lines
    for result in report.results:
        cells = [f"{result.slices[n][target]['NDCG@10']:.4f} ({result.slice_cases[n][target]:,})"
                 if result.slice_cases[n].get(target) else "- (0)" for n in ("repeat", "explore", "cold")]
        assert f"| {result.name} | " + " | ".join(cells) + " |" in lines
    best, diffs = report.differences("NDCG@10", target)
    assert best in ("MostPopular", "Repeat", "Repeat+learned")
    header = next(line for line in lines if line.startswith("| Model | all (best baseline:"))
    assert f"all (best baseline: {best})" in header
    assert any(line.startswith(f"| GAMER | {diffs['GAMER']} |") for line in lines)


def test_body_has_usage_for_this_repo_limitations_and_citation(card: ModelCard, facts) -> None:
    text = card.text
    assert text.count(f'from_pretrained("{REPO_ID}")') == 2  # model and tokenizer, with gamer_hf
    assert text.count(f'from_pretrained("{REPO_ID}", trust_remote_code=True)') == 2  # and without
    first_item = facts["tokenizer"].item_ids[0]
    assert repr(first_item) in text  # the example history uses the repo's own catalogue
    assert "## Limitations" in text and f"Only the {len(facts['tokenizer'].item_index):,} items" in text
    assert "eprint        = {2511.03155}" in text and "Generative Sequential Recommendation via Hierarchical" in text


def test_card_without_metadata_files_says_not_recorded(facts) -> None:
    card = build_model_card(facts["model"], facts["tokenizer"], REPO_ID)

    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "Evaluation results were not recorded" in card.text
    assert "Training settings were not recorded" in card.text
    for label in ("Method", "Learning rate", "Best validation loss", "Users", "Size preset"):
        assert f"| {label} | {NOT_RECORDED} |" in card.text
    assert "(from the item index)" in card.text  # codebook usage measured on the shipped index instead
    assert f"| Parameters | {facts['model'].num_parameters():,} |" in card.text  # always measurable


@pytest.mark.parametrize(
    ("dropped", "label"),
    [("semantic_ids", "Method"), ("results", "Optimizer steps"), ("training_arguments", "Learning rate"),
     ("data", "Events"), ("versions", "Software")],
)
def test_partial_training_info_renders_the_rest(facts, dropped: str, label: str) -> None:
    training = copy.deepcopy(facts["training"])
    del training[dropped]
    card = build_model_card(facts["model"], facts["tokenizer"], REPO_ID, training=training)
    assert f"| {label} | {NOT_RECORDED} |" in card.text
    assert f"| Parameters | {facts['model'].num_parameters():,} |" in card.text


def test_table_cells_cannot_be_broken_by_data(facts) -> None:
    training = copy.deepcopy(facts["training"])
    training["semantic_ids"]["method"] = "rq|kmeans"
    card = build_model_card(facts["model"], facts["tokenizer"], REPO_ID, training=training)
    assert "| Method | rq\\|kmeans |" in card.text


def test_template_is_found_from_the_source_checkout() -> None:
    template = load_template()
    assert template.startswith("---\n{{ card_data }}\n---")
    assert template == (Path(__file__).resolve().parents[2] / "hub_cards" / "gamer_model_card.md").read_text()


@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_pushed_card_loads_and_validates_on_the_hub(published: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    published.server.patch_in_process(monkeypatch)
    card = ModelCard.load(GAMER_REPO)
    card.validate()  # the Hub's validate-yaml endpoint

    evaluation = json.loads((published.checkpoint / "eval_results.json").read_text())
    target = evaluation["target_behavior"]
    measured = _result(evaluation, "GAMER")["metrics"][target]
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {
        f"{key} ({target})": value for key, value in measured.items()}
    assert any(r.path == "/api/validate-yaml" for r in published.server.requests)


def test_card_shows_the_data_report_evaluate_recorded(card: ModelCard, facts) -> None:
    report = DataReport.from_dict(facts["evaluation"]["metadata"]["data_report"])
    assert f"| Users with training history | {report.training_users:,} of {report.users:,} |" in card.text
    buy = report.repeats["buy"]
    assert f"buy: last item {buy.share(buy.last_item):.0%}, anywhere {buy.share(buy.in_prompt):.0%} of {buy.cases:,}" \
        in card.text
    evaluation = copy.deepcopy(facts["evaluation"])
    flagged = dataclasses.replace(report, warnings=[DataWarning("trivial_targets", "5 of 5 test buy cases repeat")])
    evaluation["metadata"]["data_report"] = flagged.to_dict()
    warned = build_model_card(facts["model"], facts["tokenizer"], REPO_ID, evaluation=evaluation)
    assert "- Data: 5 of 5 test buy cases repeat." in warned.text.split("## Limitations", 1)[1]
    del evaluation["metadata"]["data_report"]  # evaluated before the data report existed
    older = build_model_card(facts["model"], facts["tokenizer"], REPO_ID, evaluation=evaluation)
    assert f"| Users with training history | {NOT_RECORDED} |" in older.text and "- Data:" not in older.text
