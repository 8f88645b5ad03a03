"""select_by="ndcg": validation NDCG@10 of recommend() picks the published checkpoint and drives early stopping."""

from __future__ import annotations

import json

import pytest

from gamer_hf.data.prepare import load_prepared
from gamer_hf.evaluation import Evaluator, GamerRecommender, as_cases, subset_cases
from gamer_hf.loading import load_gamer
from gamer_hf.training import RANKING_METRIC, TRAINING_INFO_FILE, TrainArguments, train


def _ranking_log(log_history: list[dict]) -> list[dict]:
    return [entry for entry in log_history if RANKING_METRIC in entry]


@pytest.mark.parametrize("exclude_history", [False, True])
def test_the_published_model_is_the_best_ranking_checkpoint(make_args, prepared_dir, exclude_history):
    args = make_args(num_train_epochs=3, select_by="ndcg", ranking_cases=24, ranking_beams=10, save_total_limit=1,
                     ranking_exclude_history=exclude_history)
    result = train(args)
    logged = _ranking_log(result.log_history)
    assert [entry["epoch"] for entry in logged] == [1.0, 2.0, 3.0]
    best = max(logged, key=lambda entry: entry[RANKING_METRIC])  # first of equal values, as the Trainer keeps
    info = json.loads((result.checkpoint_dir / TRAINING_INFO_FILE).read_text())["results"]
    assert info["selected_by"] == "ndcg" and info["best_global_step"] == best["step"]
    assert result.best_metric == info["best_eval_ndcg10"] == best[RANKING_METRIC]
    assert info["best_eval_loss"] == next(e["eval_loss"] for e in result.log_history
                                          if "eval_loss" in e and e["step"] == best["step"])  # fmt: skip
    # the published weights rank the same validation subset exactly as logged at the selected step
    prepared = load_prepared(prepared_dir)
    model, tokenizer = load_gamer(result.checkpoint_dir, device="cpu")
    cases = as_cases(subset_cases(prepared.splits["validation"], 24, args.seed))
    evaluator = Evaluator(cases, prepared.metadata["behaviors"], k_values=(10,), progress=False)
    recommender = GamerRecommender(model, tokenizer, num_beams=10, max_history=prepared.metadata["max_history"],
                                   on_unknown="skip", exclude_history=exclude_history)  # fmt: skip
    assert evaluator.evaluate(recommender).merged["NDCG@10"] == pytest.approx(best[RANKING_METRIC])
    repeats = sum(bool(set(case.target_items) & set(case.history_items)) for case in cases)
    assert {(entry["ranking_cases"], entry["ranking_repeat_cases"]) for entry in logged} == {(24, repeats)}
    assert 0 < repeats < 24  # the fixture's subset holds both kinds
    other = GamerRecommender(model, tokenizer, num_beams=10, max_history=prepared.metadata["max_history"],
                             on_unknown="skip", exclude_history=not exclude_history)  # fmt: skip
    assert evaluator.evaluate(other).merged["NDCG@10"] != pytest.approx(best[RANKING_METRIC])  # the decoding matters


def test_ranking_seed_fixes_the_cases_across_training_seeds(make_args, prepared_dir, monkeypatch, tmp_path):
    from gamer_hf.training import runner

    drawn = []
    monkeypatch.setattr(runner, "subset_cases", lambda cases, limit, seed: drawn.append(seed) or subset_cases(
        cases, limit, seed))
    prepared = load_prepared(prepared_dir)
    for seed in (1, 2):
        result = train(make_args(num_train_epochs=1, seed=seed, select_by="ndcg", ranking_cases=24, ranking_beams=10,
                                 ranking_seed=7, output_dir=tmp_path / f"seed{seed}"))
        expected = as_cases(subset_cases(prepared.splits["validation"], 24, 7))
        repeats = sum(bool(set(case.target_items) & set(case.history_items)) for case in expected)
        assert _ranking_log(result.log_history)[0]["ranking_repeat_cases"] == repeats
    assert drawn == [7, 7]


def test_a_ranking_that_stops_improving_stops_training(make_args):
    # no learning: the ranking never improves on the first evaluation, so patience 1 ends the run after two
    result = train(make_args(num_train_epochs=4, learning_rate=1e-12, select_by="ndcg", ranking_cases=16,
                             ranking_beams=10, early_stopping_patience=1))  # fmt: skip
    assert [entry["epoch"] for entry in _ranking_log(result.log_history)] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"select_by": "recall"}, "select_by must be 'loss' or 'ndcg'"),
     ({"select_by": "ndcg", "ranking_beams": 5}, "ranking_beams >= 10"),
     ({"select_by": "ndcg", "ranking_cases": 0}, "ranking_cases must be >= 1"),
     ({"ranking_exclude_history": True}, "^ranking_exclude_history: only the ranking selection reads it"),
     ({"ranking_seed": 3}, "^ranking_seed: only the ranking selection reads it"),
     ({"ranking_cases": 100, "ranking_beams": 30}, "^ranking_cases, ranking_beams: only the ranking selection reads it; "
                                                  "set select_by='ndcg' or drop it \\(select_by is 'loss'\\)$")],
)  # fmt: skip
def test_bad_selection_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainArguments(data="d", output_dir="o", tokenizer="t", **overrides)
