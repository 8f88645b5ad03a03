"""SASRec baselines on synthetic data: they learn, beat popularity, follow the Recommender contract, are seeded."""

from __future__ import annotations

import pytest
import torch

from gamer_hf.baselines import SASRecRecommender
from gamer_hf.evaluation import EvalCase, Evaluator, MostPopular, Recommender, as_cases


def test_training_loss_falls_and_validation_selects_an_epoch(fitted: SASRecRecommender) -> None:
    history = fitted.fit_result.history
    assert len(history) == 8 and fitted.fit_result.stop_reason == "epochs"
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    best = min(history, key=lambda row: row["eval_loss"])
    assert fitted.fit_result.best_epoch == best["epoch"] and best["eval_loss"] < history[0]["eval_loss"]


def test_beats_most_popular_on_the_test_cases(fitted: SASRecRecommender, prepared) -> None:
    evaluator = Evaluator(prepared.splits["test"], prepared.metadata["behaviors"], progress=False)
    train = prepared.splits["train"]
    popular = MostPopular().fit({"history_behaviors": train["behaviors"], "history_items": train["items"]})
    ours, theirs = evaluator.evaluate(fitted), evaluator.evaluate(popular)
    assert ours.merged["NDCG@10"] > theirs.merged["NDCG@10"] + 0.02


def test_recommend_contract(fitted: SASRecRecommender, prepared) -> None:
    cases = as_cases(prepared.splits["test"].select(range(20)))
    assert isinstance(fitted, Recommender)
    lists = fitted.recommend(cases, top_k=10)
    catalogue = set(prepared.item_ids)
    assert len(lists) == len(cases)
    for ranking in lists:
        assert len(ranking) == len(set(ranking)) == 10
        assert all(isinstance(item, str) for item in ranking) and set(ranking) <= catalogue
    assert fitted.recommend([], top_k=10) == []
    assert len(fitted.recommend(cases[:1], top_k=10_000)[0]) == len(catalogue)


def test_only_the_behavior_variant_ranks_per_behavior(fitted: SASRecRecommender, prepared) -> None:
    case = as_cases(prepared.splits["test"].select([0]))[0]
    per_behavior = [EvalCase(case.user_id, case.history_behaviors, case.history_items, behavior, case.target_items)
                    for behavior in prepared.metadata["behaviors"]]
    scores = fitted.scores(per_behavior)
    if fitted.use_behaviors:
        assert not torch.allclose(scores[0], scores[-1])
        assert len({tuple(r) for r in fitted.recommend(per_behavior, top_k=10)}) > 1
    else:
        assert torch.equal(scores[0], scores[-1])


def test_unknown_history_items_are_ignored_not_fatal(fitted: SASRecRecommender) -> None:
    case = EvalCase("u", ("click", "click"), ("never-seen", "also-unknown"), "buy", ("x",))
    [ranking] = fitted.recommend([case], top_k=5)
    assert len(ranking) == 5


def test_same_seed_same_model_other_seed_other_model(prepared, settings, model_options) -> None:
    train = prepared.splits["train"].select(range(60))
    validation = prepared.splits["validation"].select(range(30))

    def fit(seed: int, **device: str) -> SASRecRecommender:
        return SASRecRecommender(True, settings(epochs=2, seed=seed, **device), **model_options).fit(
            train, prepared.item_ids, prepared.metadata["behaviors"], validation)

    first, again, other = fit(1), fit(1, device="cpu"), fit(2)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert not torch.equal(first.model.items.weight, other.model.items.weight)
    assert first.fit_result.history[-1]["loss"] == again.fit_result.history[-1]["loss"]


def test_ndcg_selection_restores_the_best_ranking_epoch(prepared, settings, model_options) -> None:
    validation = prepared.splits["validation"].select(range(80))
    model = SASRecRecommender(settings=settings(epochs=4, select_by="ndcg"), **model_options).fit(
        prepared.splits["train"], prepared.item_ids, prepared.metadata["behaviors"], validation)
    history = model.fit_result.history
    best = max(history, key=lambda row: row["eval_ndcg10"])
    assert model.fit_result.best_epoch == best["epoch"] and model.fit_result.best_metric == best["eval_ndcg10"]
    evaluator = Evaluator(validation, prepared.metadata["behaviors"], progress=False)
    assert evaluator.evaluate(model).merged["NDCG@10"] == pytest.approx(best["eval_ndcg10"])
    with pytest.raises(ValueError, match="select_by"):
        settings(select_by="hr")
    with pytest.raises(ValueError, match="device must name a torch device.*'gpu0'"):
        settings(device="gpu0")


def test_wall_clock_cap_and_errors(prepared, settings, model_options) -> None:
    model = SASRecRecommender(settings=settings(epochs=5, max_seconds=1e-6), **model_options)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.recommend(as_cases(prepared.splits["test"].select([0])), top_k=3)
    model.fit(prepared.splits["train"], prepared.item_ids, prepared.metadata["behaviors"])
    assert model.fit_result.stop_reason == "max_seconds" and model.fit_result.epochs_run == 1
    with pytest.raises(ValueError, match="lacks columns \\['items'\\]"):
        model.fit({"behaviors": [["click"]]}, prepared.item_ids, prepared.metadata["behaviors"])
    with pytest.raises(ValueError, match="two or more interactions"):
        model.fit([{"behaviors": ["click"], "items": [prepared.item_ids[0]]}], prepared.item_ids,
                  prepared.metadata["behaviors"])
