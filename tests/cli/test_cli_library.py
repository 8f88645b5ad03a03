"""Each command is a thin layer over one library function: the same call from Python gives the same
result, and the library raises a typed error where the command prints its one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tqdm.auto import tqdm

from gamer_hf.cli import main
from gamer_hf.data import load_prepared
from gamer_hf.errors import InputError, OutputExistsError
from gamer_hf.evaluation import EvaluateArguments, evaluate_checkpoint, sample_users, subset_cases
from gamer_hf.evaluation import evaluator as evaluator_module
from gamer_hf.loading import load_gamer, parse_history, recommend_items
from gamer_hf.semantic_ids import SemanticIdArguments, build_tokenizer


def test_recommend_command_prints_what_recommend_items_returns(checkpoint: Path, capsys) -> None:
    model, tokenizer = load_gamer(checkpoint, device="cpu")
    history = f"click:{tokenizer.item_ids[0]},cart:{tokenizer.item_ids[3]}"
    behavior, expected = recommend_items(model, tokenizer, parse_history(history), top_k=5)
    assert main(["recommend", "--model", str(checkpoint), "--history", history, "--top_k", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["behavior"] == behavior == tokenizer.target_behavior
    assert [row["item_id"] for row in printed["items"]] == [item for item, _ in expected] and len(expected) == 5


@pytest.mark.parametrize(("history", "message"), [([("click", "no-such-item")], "unknown item"),
                                                  ([("like", None)], "unknown behavior")])
def test_recommend_items_raises_input_errors(checkpoint: Path, history, message) -> None:
    model, tokenizer = load_gamer(checkpoint, device="cpu")
    with pytest.raises(InputError, match=message):
        recommend_items(model, tokenizer, history)


def test_evaluate_command_writes_the_report_evaluate_checkpoint_returns(checkpoint: Path, prepared: Path,
                                                                        tmp_path: Path) -> None:
    arguments = ["--model", str(checkpoint), "--data", str(prepared), "--max_cases", "12", "--num_beams", "10",
                 "--rerank", "false"]
    assert main(["evaluate", *arguments, "--out", str(tmp_path / "cli")]) == 0
    report = evaluate_checkpoint(EvaluateArguments(model=str(checkpoint), data=str(prepared), max_cases=12,
                                                   num_beams=10, rerank=False, out=str(tmp_path / "api")),
                                 progress=False)
    written = json.loads((tmp_path / "cli" / "eval_results.json").read_text())
    assert [row["name"] for row in written["results"]] == [result.name for result in report.results]
    assert [row["metrics"] for row in written["results"]] == [result.to_dict()["metrics"] for result in report.results]


def test_evaluate_on_a_sample_of_users_scores_all_their_cases(checkpoint: Path, prepared: Path, tmp_path: Path) -> None:
    arguments = ["--model", str(checkpoint), "--data", str(prepared), "--max_test_users", "4", "--num_beams", "10",
                 "--rerank", "false", "--repeat_slots", "0", "--seed", "2"]
    assert main(["evaluate", *arguments, "--out", str(tmp_path / "cli")]) == 0
    written = json.loads((tmp_path / "cli" / "eval_results.json").read_text())["metadata"]
    sampled = sample_users(load_prepared(prepared).splits["test"], 4, seed=2)
    assert written["users"] == len(set(sampled["user_id"])) == 4 and written["max_test_users"] == 4
    assert written["cases"] == len(sampled)


class _RecordedBars(tqdm):
    """tqdm that records each bar it opens (description, total), silently."""

    opened: list[tuple[str, int]] = []

    def __init__(self, *args, **kwargs) -> None:
        type(self).opened.append((kwargs.get("desc", ""), kwargs.get("total")))
        super().__init__(*args, **{**kwargs, "disable": True})


def test_evaluate_shows_one_bar_per_decode_and_one_for_the_validation_blends(
        checkpoint: Path, prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluator_module, "tqdm", _RecordedBars)
    monkeypatch.setattr(_RecordedBars, "opened", [])
    arguments = ["--model", str(checkpoint), "--data", str(prepared), "--max_cases", "12", "--num_beams", "10",
                 "--rerank_cases", "9"]
    assert main(["evaluate", *arguments, "--out", str(tmp_path / "cli")]) == 0
    descriptions = [desc for desc, _ in _RecordedBars.opened]
    assert descriptions.count("evaluate GAMER") == 1
    assert [total for desc, total in _RecordedBars.opened if desc == "validation: choose mixer, fit reranker"] == [9]
    assert len(descriptions) == len(set(descriptions))  # no step shows its bar twice


def test_evaluate_refuses_a_file_as_output_folder(checkpoint: Path, prepared: Path, tmp_path: Path) -> None:
    (tmp_path / "report").write_text("mine")
    with pytest.raises(OutputExistsError, match="is a file"):
        evaluate_checkpoint(EvaluateArguments(model=str(checkpoint), data=str(prepared), out=str(tmp_path / "report")))
    assert (tmp_path / "report").read_text() == "mine"


def test_subset_cases_is_seeded_and_keeps_order(prepared: Path) -> None:
    test = load_prepared(prepared).splits["test"]
    first, again = (subset_cases(test, 10, seed=3)["user_id"] for _ in range(2))
    assert first == again and len(first) == 10 and first != subset_cases(test, 10, seed=4)["user_id"]
    users = test["user_id"]
    assert [users.index(user) for user in first] == sorted(users.index(user) for user in first)
    assert subset_cases(test, None, seed=0) is test


def test_build_tokenizer_returns_the_build_and_raises_typed_errors(prepared: Path, tmp_path: Path) -> None:
    built = build_tokenizer(SemanticIdArguments(data=str(prepared), out=str(tmp_path / "tok"), method="cid",
                                                codebook_size=8))
    assert len(built.tokenizer.item_index) == len(built.semantic_ids.item_index) > 0
    assert built.metadata["source"] and "embedding" not in built.metadata
    with pytest.raises(OutputExistsError, match="not empty"):
        build_tokenizer(SemanticIdArguments(data=str(prepared), out=str(tmp_path / "tok"), method="cid"))
    with pytest.raises(ValueError, match="cannot parse behavior"):  # the CLI reports it in one line too
        build_tokenizer(SemanticIdArguments(data=str(prepared), out=str(tmp_path / "tok"), method="cid",
                                            overwrite=True, behaviors="click:zero"))
