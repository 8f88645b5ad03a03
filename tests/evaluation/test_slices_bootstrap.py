"""Repeat / explore / cold slices in every result, and paired-bootstrap differences to the best baseline."""

from __future__ import annotations

import numpy as np
import pytest

from gamer_hf.evaluation import EvalCase, EvaluationReport, Evaluator, MostPopular, Repeat, as_cases, ranking_metrics
from gamer_hf.evaluation import seed_pooled_differences
from gamer_hf.evaluation.bootstrap import paired_bootstrap, seed_pooled_bootstrap
from gamer_hf.evaluation.slices import case_slice, slice_labels, slice_mask

KNOWN = {"i1", "i2", "i3", "i4"}  # the items of the `train_events` fixture


def _case(history: list[str], targets: list[str], behavior: str = "buy", user: str = "u") -> EvalCase:
    return as_cases([{"user_id": user, "history_behaviors": ["click"] * len(history), "history_items": history,
                      "target_behavior": behavior, "target_items": targets}])[0]  # fmt: skip


@pytest.mark.parametrize(
    ("history", "targets", "known", "expected"),
    [
        (["i1", "i2"], ["i2"], KNOWN, "repeat"),
        (["i1"], ["i9", "i1"], KNOWN, "repeat"),  # one target in the prompt is enough
        (["i1"], ["i2"], KNOWN, "explore"),
        (["i1"], ["i9", "i2"], KNOWN, "explore"),  # one known target: not cold
        (["i1"], ["i9"], KNOWN, "cold"),
        (["i1"], ["i9"], None, "explore"),  # no training items given: no cold label
    ],
)
def test_case_slice(history, targets, known, expected) -> None:
    assert case_slice(_case(history, targets), known) == expected


def test_explore_mask_includes_cold() -> None:
    labels = ["repeat", "explore", "cold", "cold"]
    assert slice_mask(labels, "explore").tolist() == [False, True, True, True]
    assert slice_mask(labels, "cold").tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="unknown slice 'warm'"):
        slice_mask(labels, "warm")


@pytest.fixture
def sliced_cases(cases: list[EvalCase]) -> list[EvalCase]:
    """The shared cases (six repeat, one cold click case) plus explore and cold buy cases."""
    return [*cases, _case(["i1"], ["i3"], user="x1"), _case(["i2"], ["i4"], user="x2"), _case(["i3"], ["i8"], user="x3")]


def test_evaluator_scores_each_slice_on_its_cases(sliced_cases, behaviors, train_events) -> None:
    evaluator = Evaluator(sliced_cases, behaviors, progress=False, known_items=KNOWN)
    assert evaluator.case_slices == ["repeat", "repeat", "repeat", "cold", "repeat", "repeat", "repeat",
                                     "explore", "explore", "cold"]  # fmt: skip
    popular = MostPopular().fit(train_events)
    result = evaluator.evaluate(popular, "MostPopular")
    rankings = popular.recommend(sliced_cases, evaluator.top_k)
    assert result.slice_cases == {"repeat": {"click": 2, "cart": 1, "buy": 3}, "explore": {"click": 1, "buy": 3},
                                  "cold": {"click": 1, "buy": 1}}  # fmt: skip
    for name, behavior, rows in (("explore", "buy", [7, 8, 9]), ("cold", "buy", [9]), ("repeat", "click", [2, 5])):
        expected = ranking_metrics([rankings[i] for i in rows], [sliced_cases[i].target_items for i in rows])
        assert result.slices[name][behavior] == pytest.approx(expected)
    merged = result.slice_merged("explore")
    assert merged["HR@10"] == pytest.approx(np.mean([result.per_case["HR@10"][i] for i in (3, 7, 8, 9)]))


def test_repeat_scores_zero_on_explore_by_construction(sliced_cases, behaviors) -> None:
    result = Evaluator(sliced_cases, behaviors, progress=False, known_items=KNOWN).evaluate(Repeat(), "Repeat")
    assert all(value == 0.0 for rows in result.slices["explore"].values() for value in rows.values())
    assert result.slices["repeat"]["buy"]["HR@10"] == 1.0


def test_without_known_items_there_is_no_cold_slice(cases, behaviors) -> None:
    result = Evaluator(cases, behaviors, progress=False).evaluate(Repeat(), "Repeat")
    assert set(result.slices) == {"repeat", "explore"}


def test_paired_bootstrap_intervals() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(500)
    same = paired_bootstrap(base, base)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    better = paired_bootstrap(base + 0.05 + rng.normal(0, 0.1, 500), base)
    assert better.excludes_zero and better.low > 0 and better.low < better.mean < better.high
    noise = paired_bootstrap(base + rng.normal(0, 0.1, 500), base)
    assert not noise.excludes_zero
    assert paired_bootstrap(base[::-1], base, seed=3) == paired_bootstrap(base[::-1], base, seed=3)
    with pytest.raises(ValueError, match="same cases"):
        paired_bootstrap(base, base[:10])


def test_seed_pooled_bootstrap_by_hand() -> None:
    # Two cases: a resample holds case 0 twice, case 1 twice or one of each, so the 95% interval runs from the
    # one case's seed-mean difference to the other's (each extreme has probability 1/4 over 2,000 resamples).
    a = np.array([[0.5, 0.0], [0.3, 1.0]])  # seeds x cases
    b = np.array([[0.0, 0.25]])  # a rule: one seed
    pooled = seed_pooled_bootstrap(a, b)
    # seed means of a: case 0 (0.5 + 0.3) / 2 = 0.4, case 1 (0.0 + 1.0) / 2 = 0.5; minus b: 0.4 and 0.25
    assert (pooled.mean, pooled.low, pooled.high, pooled.cases) == pytest.approx((0.325, 0.25, 0.4, 2))


def test_seed_pooled_bootstrap_keeps_a_case_s_seeds_together() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random((3, 400)), rng.random((3, 400))
    pooled = seed_pooled_bootstrap(a, b, seed=5)
    # The same resampled cases as one paired bootstrap over the per-case seed-mean differences.
    assert pooled == paired_bootstrap(a.mean(0), b.mean(0), seed=5)
    assert seed_pooled_bootstrap(a[:1], b[:1]) == paired_bootstrap(a[0], b[0])  # one seed: the per-seed interval
    with pytest.raises(ValueError, match="same cases"):
        seed_pooled_bootstrap(a, b[:, :10])
    with pytest.raises(ValueError, match=r"\[seeds, cases\]"):
        seed_pooled_bootstrap(a[0], b[0])


def test_seed_pooled_differences_pick_the_best_baseline_by_seed_mean(sliced_cases, behaviors, train_events) -> None:
    evaluator = Evaluator(sliced_cases, behaviors, progress=False, known_items=KNOWN)
    popular = MostPopular().fit(train_events)
    reports = [evaluator.evaluate_all({"MostPopular": popular, "Repeat": Repeat(), "Oracle": _Oracle()},
                                      baselines=["MostPopular", "Repeat"]) for _ in range(2)]
    reports[1].results = [r for r in reports[1].results if r.name != "Oracle"] + [
        evaluator.evaluate(_Nothing(), "Oracle")]  # the second seed's "Oracle" finds nothing
    best, pooled = seed_pooled_differences(reports, "NDCG@10", "buy")
    assert best == reports[0].differences("NDCG@10", "buy")[0]  # the rules score the same in both seeds
    assert set(pooled) == {"MostPopular", "Repeat", "Oracle"} - {best}
    buy = reports[0].case_mask("buy")
    oracle = np.stack([np.asarray(r["Oracle"].per_case["NDCG@10"])[buy] for r in reports]).mean(0)
    reference = np.asarray(reports[0][best].per_case["NDCG@10"])[buy]
    assert pooled["Oracle"].mean == pytest.approx(float((oracle - reference).mean()))
    assert seed_pooled_differences(reports[:1], "NDCG@10", "buy", "explore") == reports[0].differences(
        "NDCG@10", "buy", "explore")
    other = Evaluator(sliced_cases[:-1], behaviors, progress=False).report()
    with pytest.raises(ValueError, match="same cases"):
        seed_pooled_differences([reports[0], other], "NDCG@10")


def test_report_compares_every_model_with_the_best_baseline(sliced_cases, behaviors, train_events, tmp_path) -> None:
    evaluator = Evaluator(sliced_cases, behaviors, progress=False, known_items=KNOWN)
    report = evaluator.evaluate_all(
        {"MostPopular": MostPopular().fit(train_events), "Repeat": Repeat(),
         "Oracle": _Oracle()}, baselines=["MostPopular", "Repeat"])  # fmt: skip
    best, diffs = report.differences("NDCG@10", "buy")
    buy = report.case_mask("buy")
    means = {r.name: np.mean(np.asarray(r.per_case["NDCG@10"])[buy]) for r in report.results if r.baseline}
    assert best == max(means, key=means.get)
    assert set(diffs) == {"MostPopular", "Repeat", "Oracle"} - {best}
    assert diffs["Oracle"].mean == pytest.approx(1.0 - means[best])
    best_explore, _ = report.differences("NDCG@10", "buy", "explore")
    assert best_explore == "MostPopular"  # Repeat is zero there
    markdown = report.to_markdown()
    assert "repeat cases | repeat NDCG@10" in markdown and "paired-bootstrap" in markdown
    assert f"| Oracle | {diffs['Oracle']} |" in markdown
    loaded = EvaluationReport.load_json(report.save_json(tmp_path / "eval.json"))
    assert loaded.to_dict() == report.to_dict() and loaded.differences("NDCG@10", "buy")[0] == best


def test_report_refuses_results_over_other_cases(sliced_cases, cases, behaviors) -> None:
    report = Evaluator(sliced_cases, behaviors, progress=False).report()
    other = Evaluator(cases, behaviors, progress=False).evaluate(Repeat(), "Repeat")
    with pytest.raises(ValueError, match="must score the same cases"):
        report.add(other)


class _Oracle:
    def recommend(self, cases: list[EvalCase], top_k: int) -> list[list[str]]:
        return [list(case.target_items)[:top_k] for case in cases]


class _Nothing:
    def recommend(self, cases: list[EvalCase], top_k: int) -> list[list[str]]:
        return [[] for _ in cases]
