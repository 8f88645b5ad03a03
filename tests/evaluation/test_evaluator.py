"""Evaluator and GamerRecommender against small classes that implement the recommender/model contracts."""

from __future__ import annotations

from typing import Any

import pytest

from gamer_hf.evaluation import (
    EvalCase,
    Evaluator,
    GamerRecommender,
    HistoryMixer,
    MostPopular,
    Repeat,
    ranking_metrics,
)

CATALOGUE = ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11", "i12"]


class ContractModel:
    """Implements `model.recommend`'s contract over a fixed catalogue and records every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def recommend(
        self, tokenizer, histories, behavior, top_k=10, num_beams=20, max_history=None, exclude_history=False,
        on_unknown="raise",
    ):  # fmt: skip
        self.calls.append(
            {"histories": histories, "behavior": behavior, "top_k": top_k, "num_beams": num_beams,
             "max_history": max_history, "exclude_history": exclude_history, "on_unknown": on_unknown}
        )  # fmt: skip
        out = []
        for history in histories:
            seen = {item for _, item in history} if exclude_history else set()
            items = [item for item in CATALOGUE if item not in seen][:top_k]
            out.append([(item, -float(rank + 1)) for rank, item in enumerate(items)])
        return out


class TableRecommender:
    """Returns a fixed list per user, so scores can be recomputed without the Evaluator."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def recommend(self, cases: list[EvalCase], top_k: int) -> list[list[str]]:
        return [self.table[case.user_id][:top_k] for case in cases]


@pytest.fixture
def tokenizer() -> object:
    """GamerRecommender only hands the tokenizer to the model; the contract model ignores it."""
    return object()


def test_batches_share_one_behavior_and_pass_the_contract_arguments(cases, behaviors, tokenizer) -> None:
    model = ContractModel()
    evaluator = Evaluator(cases, behaviors, batch_size=2, progress=False)
    evaluator.evaluate(GamerRecommender(model, tokenizer, num_beams=7, max_history=5), "GAMER")
    assert [(c["behavior"], len(c["histories"])) for c in model.calls] == [
        ("click", 2), ("click", 1), ("cart", 1), ("buy", 2), ("buy", 1)
    ]  # fmt: skip
    assert {(c["top_k"], c["num_beams"], c["max_history"], c["exclude_history"]) for c in model.calls} == {
        (10, 7, 5, False)
    }
    passed = [h for c in model.calls for h in c["histories"]]
    assert sorted(map(tuple, passed)) == sorted(tuple(case.history) for case in cases)


def test_scores_align_with_cases_per_behavior_and_merged(cases, behaviors) -> None:
    table = {case.user_id: [CATALOGUE[(n + j) % len(CATALOGUE)] for j in range(12)] for n, case in enumerate(cases)}
    result = Evaluator(cases, behaviors, k_values=(1, 3, 10), batch_size=3, progress=False).evaluate(
        TableRecommender(table), "table"
    )
    assert list(result.metrics) == ["click", "cart", "buy"]
    assert result.num_cases == {"click": 3, "cart": 1, "buy": 3}
    for behavior, metrics in result.metrics.items():
        subset = [c for c in cases if c.target_behavior == behavior]
        expected = ranking_metrics([table[c.user_id] for c in subset], [c.target_items for c in subset], (1, 3, 10))
        assert metrics == pytest.approx(expected)
    pooled = ranking_metrics([table[c.user_id] for c in cases], [c.target_items for c in cases], (1, 3, 10))
    assert result.merged == pytest.approx(pooled)
    assert result.target == result.metrics["buy"]
    assert result.seconds is not None and result.seconds >= 0


def test_oracle_gets_perfect_hit_rate_and_ndcg(cases, behaviors) -> None:
    oracle = TableRecommender({c.user_id: list(c.target_items) + ["pad"] * 10 for c in cases})
    result = Evaluator(cases, behaviors, progress=False).evaluate(oracle)
    assert result.name == "TableRecommender"
    for behavior, metrics in result.metrics.items():
        sizes = [len(c.target_items) for c in cases if c.target_behavior == behavior]
        assert metrics["HR@1"] == metrics["NDCG@1"] == metrics["NDCG@10"] == pytest.approx(1.0)
        assert metrics["Recall@1"] == pytest.approx(sum(1 / n for n in sizes) / len(sizes))


def test_baselines_and_model_in_one_report(cases, behaviors, tokenizer, train_events) -> None:
    evaluator = Evaluator(cases, behaviors, progress=False)
    report = evaluator.evaluate_all(
        {"GAMER": GamerRecommender(ContractModel(), tokenizer), "MostPopular": MostPopular().fit(train_events),
         "Repeat": Repeat()},
        metadata={"dataset": "handcrafted"},
    )  # fmt: skip
    assert [r.name for r in report.results] == ["GAMER", "MostPopular", "Repeat"]
    repeat_rankings = Repeat().recommend(cases, 10)
    buy = [n for n, c in enumerate(cases) if c.target_behavior == "buy"]
    assert report["Repeat"].target == pytest.approx(
        ranking_metrics([repeat_rankings[n] for n in buy], [cases[n].target_items for n in buy])
    )
    assert report.metadata == {"dataset": "handcrafted"}


def test_exclude_history_and_mixer_are_applied(cases, tokenizer) -> None:
    model = ContractModel()
    recommender = GamerRecommender(model, tokenizer, exclude_history=True, mixer=HistoryMixer(repeat_slots=1))
    [got] = recommender.recommend(cases[:1], top_k=4)  # history i1, i2, i2: most recent i2
    assert got == ["i2", "i3", "i4", "i5"]
    assert model.calls[0]["exclude_history"] is True


def test_predict_once_then_score_many_mixers(cases, behaviors, tokenizer) -> None:
    evaluator = Evaluator(cases, behaviors, batch_size=4, progress=False)
    generated = evaluator.predict(GamerRecommender(ContractModel(), tokenizer).generate)
    for mixer in (HistoryMixer(alpha=0.3), HistoryMixer(repeat_slots=2)):
        swept = evaluator.score([mixer.mix(g, c, evaluator.top_k) for g, c in zip(generated, cases)], "sweep")
        direct = evaluator.evaluate(GamerRecommender(ContractModel(), tokenizer, mixer=mixer))
        assert swept.metrics == direct.metrics


def test_mixed_behavior_batch_passes_a_behavior_per_history(cases, tokenizer) -> None:
    model = ContractModel()
    GamerRecommender(model, tokenizer).generate(cases[1:3], top_k=2)
    assert model.calls[0]["behavior"] == ["buy", "click"]


@pytest.mark.parametrize("on_unknown", ["raise", "skip"])
def test_on_unknown_goes_to_the_model(cases, tokenizer, on_unknown: str) -> None:
    model = ContractModel()
    GamerRecommender(model, tokenizer, on_unknown=on_unknown).generate(cases[:1], top_k=2)
    assert model.calls[0]["on_unknown"] == on_unknown


def test_progress_bar_names_the_model(cases, behaviors, capsys) -> None:
    Evaluator(cases, behaviors, progress=True).evaluate(Repeat(), "Repeat")
    assert "evaluate Repeat" in capsys.readouterr().err


class ShortBatch:
    def recommend(self, cases, top_k):
        return [["i1"]] * (len(cases) - 1)


class IntIds:
    def recommend(self, cases, top_k):
        return [[1, 2]] * len(cases)


@pytest.mark.parametrize(
    ("recommender", "error", "message"),
    [
        (ShortBatch(), ValueError, "got 1 outputs for a batch of 2"),
        (IntIds(), TypeError, "holds 1 of type int; item ids must be str"),
        (object(), TypeError, "no recommend"),
    ],
)
def test_bad_recommenders_fail_clearly(cases, behaviors, recommender, error, message) -> None:
    with pytest.raises(error, match=message):
        Evaluator(cases, behaviors, batch_size=2, progress=False).evaluate(recommender)


def test_bad_evaluator_inputs(cases, behaviors) -> None:
    with pytest.raises(ValueError, match=r"test case 0 \(user 'u1'\) asks for behavior 'buy'"):
        Evaluator(cases, {"click": 1, "cart": 2}, progress=False)
    with pytest.raises(ValueError, match="no test cases"):
        Evaluator([], behaviors)
    with pytest.raises(ValueError, match="batch_size"):
        Evaluator(cases, behaviors, batch_size=0)
    with pytest.raises(ValueError, match="on_unknown"):
        GamerRecommender(ContractModel(), None, on_unknown="drop")
