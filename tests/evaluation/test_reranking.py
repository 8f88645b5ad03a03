"""HistoryReranker: features, what it learns from held-out cases, persistence, and GAMER behind it."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.errors import DataError
from gamer_hf.evaluation import (
    CASE_FEATURES,
    EXPLORE_FEATURES,
    GATE_GRID,
    HISTORY_FEATURES,
    MODEL_FEATURES,
    EvalCase,
    Evaluator,
    GamerRecommender,
    HistoryReranker,
    REGULARIZATION_GRID,
    MostPopular,
    Repeat,
    per_case_metrics,
)

BEHAVIORS = {"click": 1, "cart": 2, "buy": 3}


def _frequent_not_recent(n: int, seed: int) -> list[EvalCase]:
    """The user buys the item they clicked most, which is never their most recent one."""
    rng = random.Random(seed)
    cases = []
    for u in range(n):
        favourite, others = f"f{u}", [f"o{u}_{j}" for j in range(rng.randint(2, 4))]
        history = [favourite] * rng.randint(3, 5) + others
        rng.shuffle(history)
        history = [*history, others[0]] if history[-1] == favourite else history
        cases.append(EvalCase(f"u{u}", ("click",) * len(history), tuple(history), "buy", (favourite,)))
    return cases


def _new_or_old(n: int, seed: int) -> tuple[list[EvalCase], list[list[str]], list[dict[str, float]]]:
    """Half the users buy GAMER's confident top beam (a new item), half their last item; GAMER's log-prob says which."""
    rng = random.Random(seed)
    cases, generated, scores = [], [], []
    for u in range(n):
        history, beams = (f"h{u}_{j}" for j in range(3)), [f"n{u}_{j}" for j in range(5)]
        history = list(history)
        confident = u % 2 == 0
        target = beams[0] if confident else history[-1]
        cases.append(EvalCase(f"u{u}", ("click",) * 3, tuple(history), "buy", (target,)))
        generated.append(beams)
        top = -0.2 if confident else -4.0
        scores.append({item: top - 2.0 * j - rng.random() * 0.1 for j, item in enumerate(beams)}
                      | {item: -12.0 + rng.random() for item in history})
    return cases, generated, scores


def test_features_describe_how_the_user_met_each_item(train_events) -> None:
    case = EvalCase("u", ("click", "buy", "click", "cart"), ("a", "b", "a", "c"), "buy", ("x",))
    reranker = HistoryReranker(BEHAVIORS, MostPopular().fit(train_events), use_model=False, popular_pool=2)
    pool = reranker.pool(case)
    assert pool == ["c", "a", "b", "i2", "i3"]  # history most recent first, then buy's most popular items
    rows = dict(zip(pool, reranker.features(case, pool).tolist()))
    named = {item: dict(zip(HISTORY_FEATURES, row)) for item, row in rows.items()}
    assert named["c"] == pytest.approx({"in_history": 1, "recency": 1, "log_count": math.log(2), "last_level": 0.5,
                                        "max_level": 0.5, "under_requested": 0, "log_popularity": 0,
                                        "log_popularity_all": 0})
    assert named["a"]["recency"] == 0.5 and named["a"]["log_count"] == pytest.approx(math.log(3))
    assert named["a"]["last_level"] == named["a"]["max_level"] == 0
    assert named["b"]["under_requested"] == 1 and named["b"]["max_level"] == 1
    assert named["i2"] == pytest.approx(dict.fromkeys(HISTORY_FEATURES, 0.0) | {
        "log_popularity": math.log(3), "log_popularity_all": math.log(4)})  # bought twice, touched three times


def test_learns_that_users_return_to_their_favourite() -> None:
    train, test = _frequent_not_recent(80, seed=0), _frequent_not_recent(80, seed=1)
    evaluator = Evaluator(test, BEHAVIORS, k_values=(1, 10), progress=False)
    learned = HistoryReranker(BEHAVIORS, use_model=False).fit(train)
    assert evaluator.evaluate(learned).target["HR@1"] == 1.0
    assert evaluator.evaluate(Repeat()).target["HR@1"] == 0.0
    coef = dict(zip(learned.weights["features"], learned.weights["coef"]))
    assert coef["log_count"] > 0 and learned.weights["fit_positives"] == 80


def test_learns_when_to_trust_the_model() -> None:
    (train, train_beams, train_scores), (test, beams, scores) = _new_or_old(60, seed=0), _new_or_old(60, seed=1)
    reranker = HistoryReranker(BEHAVIORS, explore=False).fit(train, train_beams, train_scores)
    ranked = reranker.rank(test, 10, beams, scores)
    assert all(row[0] == case.target_items[0] for row, case in zip(ranked, test))
    evaluator = Evaluator(test, BEHAVIORS, k_values=(1,), progress=False)
    assert evaluator.score(ranked, "rerank").target["HR@1"] == 1.0
    assert evaluator.score(beams, "beams").target["HR@1"] == 0.5  # either rule alone gets half
    assert evaluator.evaluate(Repeat()).target["HR@1"] == 0.5
    assert set(reranker.weights["features"]) == set(HISTORY_FEATURES + MODEL_FEATURES)


def test_cross_validation_chooses_the_regularization_by_held_out_ndcg() -> None:
    cases, beams, scores = _new_or_old(60, seed=0)
    # A third of the users buy their oldest item, against GAMER's log-prob: there is something to overfit.
    cases = [replace(case, target_items=(case.history_items[0],)) if i % 3 == 0 else case for i, case in enumerate(cases)]
    chosen = HistoryReranker(BEHAVIORS, explore=False, regularization=REGULARIZATION_GRID, cv_folds=3).fit(
        cases, beams, scores)
    # By hand: the same seeded 3 folds, each value fit on two folds and scored (NDCG@10) on the third.
    fold = np.empty(60, dtype=int)
    fold[np.random.default_rng(0).permutation(60)] = np.arange(60) % 3
    by_hand = {}
    for value in REGULARIZATION_GRID:
        ndcg = np.zeros(60)
        for held in range(3):
            inside, outside = np.flatnonzero(fold != held), np.flatnonzero(fold == held)
            single = HistoryReranker(BEHAVIORS, explore=False, regularization=value).fit(
                [cases[i] for i in inside], [beams[i] for i in inside], [scores[i] for i in inside])
            ranked = single.rank([cases[i] for i in outside], 10, [beams[i] for i in outside],
                                 [scores[i] for i in outside])
            ndcg[outside] = per_case_metrics(ranked, [cases[i].target_items for i in outside], (10,))["NDCG@10"]
        by_hand[f"ungated C={value:g}"] = ndcg.mean()
    assert chosen.weights["cv_ndcg10"] == pytest.approx(by_hand)
    best = max(REGULARIZATION_GRID, key=lambda value: (by_hand[f"ungated C={value:g}"], -value))  # ties: smaller C
    refit = HistoryReranker(BEHAVIORS, explore=False, regularization=best).fit(cases, beams, scores)
    assert chosen.weights["regularization"] == best
    assert chosen.weights["coef"] == pytest.approx(refit.weights["coef"])
    again = HistoryReranker.from_dict(chosen.to_dict())
    assert again.grid == list(REGULARIZATION_GRID) and again.cv_folds == 3
    with pytest.raises(ValueError, match="cv_folds >= 2"):
        HistoryReranker(BEHAVIORS, regularization=REGULARIZATION_GRID, cv_folds=1)
    with pytest.raises(ValueError, match="cannot cross-validate 3 folds on 2 cases"):
        HistoryReranker(BEHAVIORS, explore=False, regularization=REGULARIZATION_GRID, cv_folds=3).fit(
            cases[:2], beams[:2], scores[:2])


def _returns_or_explores(n: int, seed: int) -> tuple[list[EvalCase], list[list[str]], list[list[str]], list[dict]]:
    """GAMER's plain beams are the user's own items; half the users buy the top explore beam (a new item, which
    GAMER scores high), half return to their last item (which GAMER scores high instead)."""
    rng = random.Random(seed)
    cases, generated, explored, scores = [], [], [], []
    for u in range(n):
        history, new = [f"h{u}_{j}" for j in range(3)], [f"n{u}_{j}" for j in range(5)]
        explores = u % 2 == 0
        cases.append(EvalCase(f"u{u}", ("click",) * 3, tuple(history), "buy", (new[0] if explores else history[-1],)))
        generated.append(history[::-1])
        explored.append(new)
        scores.append({item: (-0.3 if explores else -5.0) - j - rng.random() * 0.1 for j, item in enumerate(new)}
                      | {item: (-5.0 if explores else -0.3) - j - rng.random() * 0.1 for j, item in enumerate(history[::-1])})
    return cases, generated, explored, scores


def test_explore_beams_bring_the_new_targets_the_plain_beams_lack() -> None:
    train, train_beams, train_explored, train_scores = _returns_or_explores(60, seed=0)
    test, generated, explored, scores = _returns_or_explores(60, seed=1)
    with_explore = HistoryReranker(BEHAVIORS).fit(train, train_beams, train_scores, train_explored)
    plain = HistoryReranker(BEHAVIORS, explore=False).fit(train, train_beams, train_scores)
    evaluator = Evaluator(test, BEHAVIORS, k_values=(1, 10), progress=False, known_items=[])
    best = evaluator.score(with_explore.rank(test, 10, generated, scores, explored), "explore")
    without = evaluator.score(plain.rank(test, 10, generated, scores), "plain")
    assert best.target["HR@1"] == 1.0 and best.slices["explore"]["buy"]["HR@1"] == 1.0
    assert without.slices["explore"]["buy"]["HR@10"] == 0.0  # the new targets never enter its pool
    assert set(with_explore.weights["features"]) == set(HISTORY_FEATURES + MODEL_FEATURES + EXPLORE_FEATURES)
    named = dict(zip(with_explore.feature_names, with_explore.features(test[0], ["n0_0", "h0_2"], generated[0],
                                                                        scores[0], explored[0]).T))
    assert list(named["in_explore_beams"]) == [1.0, 0.0] and named["history_model_logp"][0] == 0.0 > named["model_logp"][1]
    with pytest.raises(ValueError, match="give explored lists"):
        with_explore.rank(test, 10, generated, scores)


def _returns_when_buying(n: int, seed: int) -> tuple[list[EvalCase], list[list[str]], list[list[str]], list[dict]]:
    """Every candidate looks the same in every case; a buy returns to the last item, a cart takes the top explore
    beam. Only a case feature (the requested behavior) tells which, so one ungated score must get half wrong."""
    rng = random.Random(seed)
    cases, generated, explored, scores = [], [], [], []
    for u in range(n):
        history, new = [f"h{u}_{j}" for j in range(3)], [f"n{u}_{j}" for j in range(5)]
        buys = rng.random() < 0.5
        cases.append(EvalCase(f"u{u}", ("click",) * 3, tuple(history), "buy" if buys else "cart",
                              (history[-1] if buys else new[0],)))
        generated.append([history[-1], new[0], *history[:-1][::-1], *new[1:]])
        explored.append(new)
        scores.append({item: -1.0 - 0.5 * j - rng.random() * 0.1 for j, item in enumerate(generated[-1])})
    return cases, generated, explored, scores


def test_the_gate_tells_a_return_from_an_explore_by_the_case() -> None:
    train, train_beams, train_explored, train_scores = _returns_when_buying(80, seed=0)
    test, generated, explored, scores = _returns_when_buying(80, seed=1)
    evaluator = Evaluator(test, BEHAVIORS, k_values=(1,), progress=False, known_items=[])
    fitted = {gate: HistoryReranker(BEHAVIORS, gate=gate).fit(train, train_beams, train_scores, train_explored)
              for gate in (False, True)}
    hits = {gate: evaluator.score(r.rank(test, 10, generated, scores, explored), str(gate)).per_case["HR@1"]
            for gate, r in fitted.items()}
    assert np.mean(hits[True]) == 1.0 and np.mean(hits[False]) < 0.75
    chosen = HistoryReranker(BEHAVIORS, gate=GATE_GRID, cv_folds=4).fit(train, train_beams, train_scores, train_explored)  # C=1: the gate alone
    assert chosen.weights["gate"] is True and chosen.weights["cv_ndcg10"]["gated C=1"] > chosen.weights["cv_ndcg10"][
        "ungated C=1"]
    assert chosen.weights["features"] == list(chosen.gated_feature_names(True))
    assert len(chosen.weights["coef"]) == len(chosen.feature_names) * (1 + len(CASE_FEATURES))
    assert chosen.rank(test, 10, generated, scores, explored) == fitted[True].rank(test, 10, generated, scores, explored)
    # The case features by hand: beam mass on history items (3 of the 8 beams), repeat rate, length, target level.
    weight = np.exp([scores[0][item] for item in generated[0]])
    on_history = [item in test[0].history_items for item in generated[0]]
    expected = [weight[on_history].sum() / weight.sum(), 0.0, math.log(4), 1.0 if test[0].target_behavior == "buy" else 0.5]
    assert chosen.case_features(test[0], generated[0], scores[0]) == pytest.approx(expected)
    again = HistoryReranker.from_dict(chosen.to_dict())
    assert again.gates == [False, True] and again.rank(test, 10, generated, scores, explored) == chosen.rank(
        test, 10, generated, scores, explored)
    with pytest.raises(ValueError, match="gate must be True, False"):
        HistoryReranker(BEHAVIORS, gate="yes")


@pytest.fixture(scope="module")
def real_cases(data_dir) -> list[EvalCase]:
    """Leave-one-out cases of the first 20,000 retail_beh_mbht events: each user's last interaction is the target."""
    events = pd.read_csv(data_dir / "retail_beh_mbht" / "events.csv.gz", nrows=20_000, dtype={"item_id": str})
    cases = []
    for user, rows in events.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id", sort=False):
        if len(rows) >= 2:
            history = rows.iloc[-21:-1]
            cases.append(EvalCase(str(user), tuple(history["behavior"]), tuple(history["item_id"]),
                                  rows["behavior"].iloc[-1], (rows["item_id"].iloc[-1],)))
    return cases


@pytest.mark.realdata
def test_the_gate_is_chosen_by_cross_validation_on_real_cases(real_cases) -> None:
    fit = real_cases[: len(real_cases) // 2]
    ungated = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID).fit(fit)
    chosen = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(fit)
    cv = chosen.weights["cv_ndcg10"]
    assert len(cv) == 2 * len(REGULARIZATION_GRID)
    assert {k: v for k, v in cv.items() if k.startswith("ungated")} == ungated.weights["cv_ndcg10"]  # same folds
    best = max(cv, key=cv.get)
    assert best == f"{'gated' if chosen.weights['gate'] else 'ungated'} C={chosen.weights['regularization']:g}"
    assert chosen.case_feature_names == CASE_FEATURES[1:]  # no beams without the model
    case = next(c for c in fit if len(set(c.history_items)) < len(c.history_items))
    rate, length, level = chosen.case_features(case)
    assert rate == 1 - len(set(case.history_items)) / len(case.history_items) > 0 and length == math.log1p(
        len(case.history_items)) and level == {"click": 0.0, "cart": 0.5, "buy": 1.0}[case.target_behavior]
    gated = HistoryReranker(BEHAVIORS, use_model=False, gate=True).fit(fit)
    rows = gated._rows([case], None, None, None)[0][1]
    base = len(gated.feature_names)
    assert rows[:, base:].reshape(len(rows), base, 3) == pytest.approx(rows[:, :base, None] * np.array([rate, length, level]))
    held_out = real_cases[len(real_cases) // 2:]
    assert len(chosen.rank(held_out, 10)) == len(held_out)


def test_items_the_model_cannot_generate_get_the_floor() -> None:
    case = EvalCase("u", ("click", "click"), ("old", "unknown"), "buy", ("old",))
    reranker = HistoryReranker(BEHAVIORS)
    rows = reranker.features(case, ["new", "unknown", "old"], ["new"], {"new": -1.0, "unknown": float("-inf"), "old": -3.0})
    named = [dict(zip(reranker.feature_names, row)) for row in rows.tolist()]
    assert [row["model_logp"] for row in named] == [0.0, -30.0, -2.0]
    assert sum(row["model_share"] for row in named) == pytest.approx(1.0)
    nothing = reranker.features(case, ["unknown", "old"], [], {"unknown": float("-inf"), "old": float("-inf")})
    assert np.isfinite(nothing).all()


def test_save_load_round_trip(tmp_path, train_events) -> None:
    popular = MostPopular().fit(train_events)
    cases, generated, scores = _new_or_old(20, seed=3)
    scores = [row | {item: -20.0 for item in popular.ranking("buy", 10)} for row in scores]
    reranker = HistoryReranker(BEHAVIORS, popular, explore=False).fit(cases, generated, scores)
    reranker.save(tmp_path / "reranker.json")
    loaded = HistoryReranker.load(tmp_path / "reranker.json", popular)
    assert loaded.rank(cases, 10, generated, scores) == reranker.rank(cases, 10, generated, scores)
    with pytest.raises(ValueError, match="fit with popularity counts"):
        HistoryReranker.load(tmp_path / "reranker.json")
    saved = reranker.to_dict()
    saved["weights"]["features"] = saved["weights"]["features"][:-1]
    with pytest.raises(ValueError, match="saved reranker has features"):
        HistoryReranker.from_dict(saved, popular)
    older = {k: v for k, v in reranker.to_dict().items() if k != "explore"}  # saved before the explore beams
    assert not HistoryReranker.from_dict(older, popular).explore


def test_clear_errors() -> None:
    cases, generated, scores = _new_or_old(4, seed=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        HistoryReranker(BEHAVIORS, use_model=False).rank(cases, 10)
    with pytest.raises(ValueError, match="give generated lists and model_scores"):
        HistoryReranker(BEHAVIORS).fit(cases)
    with pytest.raises(ValueError, match="no model score for pool item 'h0_2'"):
        HistoryReranker(BEHAVIORS, explore=False).fit(
            cases, generated, [{k: v for k, v in s.items() if k.startswith("n")} for s in scores])
    with pytest.raises(ValueError, match="give explored lists .* or build it with explore=False"):
        HistoryReranker(BEHAVIORS).fit(cases, generated, scores)
    misses = [EvalCase("u", ("click",), ("a",), "buy", ("z",))]
    with pytest.raises(ValueError, match="0 of 1 pooled items are targets"):
        HistoryReranker(BEHAVIORS, use_model=False).fit(misses)
    with pytest.raises(ValueError, match="GamerRecommender"):
        HistoryReranker(BEHAVIORS).recommend(cases, 10)


def test_gamer_recommender_reranks_beams_history_and_popular(train_events) -> None:
    catalogue = {f"i{n}": ((n - 1) // 4, (n - 1) % 4) for n in range(1, 13)}
    tok = GamerTokenizerFast.from_items(catalogue, behaviors=BEHAVIORS, codebook_size=[3, 4])
    torch.manual_seed(0)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tok)).eval()
    rng = random.Random(0)
    cases = [EvalCase(f"u{u}", ("click",) * 4, tuple(rng.sample(sorted(catalogue), 4)), "buy", (f"i{1 + u % 12}",))
             for u in range(24)]
    popular = MostPopular().fit(train_events)
    reranker = HistoryReranker(BEHAVIORS, popular, popular_pool=3)
    plain = GamerRecommender(model, tok, num_beams=6)
    generated, explored = plain.generate(cases, 6), plain.generate(cases, 6, exclude_history=True)
    scores = plain.pool_scores(cases, generated, reranker, explored)
    for case, row, new, scored in zip(cases, generated, explored, scores):
        assert not {item for item, _ in new} & set(case.history_items)
        pool = reranker.pool(case, [item for item, _ in row], [item for item, _ in new])
        assert set(scored) == set(pool) and all(scored[item] == s for item, s in row + new)
        assert scored[case.history_items[0]] == pytest.approx(
            model.score_items(tok, [case.history], [[case.history_items[0]]])[0][0], abs=1e-5)
    with pytest.raises(RuntimeError, match="no reranker"):
        plain.rerank(cases, generated, 5)
    fitted = GamerRecommender(model, tok, num_beams=6).fit_reranker(cases, reranker)
    again = HistoryReranker(BEHAVIORS, popular, popular_pool=3)
    GamerRecommender(model, tok, num_beams=6).fit_reranker(cases, again, generated)  # beams already decoded
    assert again.weights == reranker.weights
    assert fitted.reranker is reranker and reranker.weights["fit_cases"] == 24
    ranked = fitted.recommend(cases, 5)
    assert ranked == reranker.rank(cases, 5, [[item for item, _ in row] for row in generated], scores,
                                   [[item for item, _ in row] for row in explored])
    assert ranked == fitted.rerank(cases, generated, 5)
    assert ranked == GamerRecommender(model, tok, num_beams=6, reranker=reranker).recommend(cases, 5)
    with pytest.raises(ValueError, match="not both"):
        GamerRecommender(model, tok, mixer=object(), reranker=reranker)


@pytest.mark.realdata
@pytest.mark.parametrize("gate", [False, True])
def test_the_fit_is_scikit_learns_optimum_and_cross_validation_chooses_alike(real_cases, gate) -> None:
    from sklearn.linear_model import LogisticRegression

    fit = real_cases[: len(real_cases) // 2]
    reranker = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID, gate=gate).fit(fit)
    rows = reranker._rows(fit, None, None, None)
    x = np.concatenate([features for _, features in rows])
    y = np.concatenate([[item in case.target_items for item in pool] for case, (pool, _) in zip(fit, rows)])
    fold = np.empty(len(fit), dtype=int)
    fold[np.random.default_rng(0).permutation(len(fit))] = np.arange(len(fit)) % 5
    by_sklearn = {}
    for value in REGULARIZATION_GRID:
        single = HistoryReranker(BEHAVIORS, use_model=False, regularization=value, gate=gate).fit(fit)
        mean, scale = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
        z = (x - mean) / scale
        exact = LogisticRegression(C=value, tol=1e-10, max_iter=100_000).fit(z, y)

        def objective(coef, intercept):  # scikit-learn's, times C
            logits = z @ coef + intercept
            return np.logaddexp(0, logits).sum() - logits[y].sum() + coef @ coef / (2 * value)

        ours = np.asarray(single.weights["coef"]), single.weights["intercept"]
        assert ours[0] == pytest.approx(exact.coef_[0], abs=2e-4) and ours[1] == pytest.approx(exact.intercept_[0], abs=2e-4)
        assert objective(*ours) <= objective(exact.coef_[0], exact.intercept_[0]) + 1e-9  # lbfgs stops before the optimum
        ndcg = np.zeros(len(fit))  # scikit-learn's default fit in the same folds: what the CV used to run
        for held in range(5):
            inside, outside = np.flatnonzero(fold != held), np.flatnonzero(fold == held)
            xi = np.concatenate([rows[i][1] for i in inside])
            mean, scale = xi.mean(0), np.where(xi.std(0) > 0, xi.std(0), 1.0)
            model = LogisticRegression(C=value, max_iter=2000).fit((xi - mean) / scale, np.concatenate(
                [[item in fit[i].target_items for item in rows[i][0]] for i in inside]))
            ranked = [[rows[i][0][j] for j in np.argsort(-(((rows[i][1] - mean) / scale) @ model.coef_[0]),
                                                         kind="stable")[:10]] for i in outside]
            ndcg[outside] = per_case_metrics(ranked, [fit[i].target_items for i in outside], (10,))["NDCG@10"]
        by_sklearn[f"{'gated' if gate else 'ungated'} C={value:g}"] = ndcg.mean()
    cv = reranker.weights["cv_ndcg10"]
    assert cv == pytest.approx(by_sklearn, abs=2e-3)
    assert max(cv, key=cv.get) == max(by_sklearn, key=by_sklearn.get)


def _noise_beams(cases: list[EvalCase], seed: int) -> tuple[list[list[str]], list[dict[str, float]]]:
    """GAMER's beams are new items no user ever takes, and its log-probabilities are noise."""
    rng = random.Random(seed)
    beams = [[f"noise{u}_{j}" for j in range(5)] for u in range(len(cases))]
    scores = [{item: -rng.random() * 10 for item in [*row, *case.history_items]} for row, case in zip(beams, cases)]
    return beams, scores


def test_a_residual_fit_gives_back_the_rule_when_the_model_adds_nothing(tmp_path) -> None:
    train, test = _frequent_not_recent(80, seed=0), _frequent_not_recent(80, seed=1)
    (train_beams, train_scores), (beams, scores) = _noise_beams(train, 0), _noise_beams(test, 1)
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, regularization=REGULARIZATION_GRID,
                               gate=GATE_GRID).fit(train, train_beams, train_scores)
    rule = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(train)
    assert residual.rule.weights == rule.weights  # Repeat+learned itself, fit on the same cases
    assert residual.weights["cv_ndcg10"]["rule only"] == max(residual.weights["cv_ndcg10"].values())
    assert residual.weights["regularization"] == 0.0 and residual.weights["coef"] == []
    ranked = residual.rank(test, 10, beams, scores)
    for row, own, case in zip(ranked, rule.rank(test, 10), test):
        assert row[0] == own[0] == case.target_items[0]
        assert [item for item in row if item in case.history_items] == own
    residual.save(tmp_path / "residual.json")
    assert HistoryReranker.load(tmp_path / "residual.json").rank(test, 10, beams, scores) == ranked
    saved = residual.to_dict()  # saved before the offset: the rule's score had a free coefficient
    saved["weights"]["rule_coef"] = -1.0
    (tmp_path / "old.json").write_text(json.dumps(saved))
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'old.json'))} fits .* free coefficient .* fit it again"):
        HistoryReranker.load(tmp_path / "old.json")
    (tmp_path / "unknown.json").write_text(json.dumps(residual.to_dict() | {"residual_items": "newest"}))
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'unknown.json'))}: residual_items must be one of"):
        HistoryReranker.load(tmp_path / "unknown.json")
    with pytest.raises(ValueError, match="residual=True .* needs use_model=True"):
        HistoryReranker(BEHAVIORS, use_model=False, residual=True)


def test_a_residual_fit_adds_the_model_where_the_rule_cannot() -> None:
    (train, train_beams, train_scores), (test, beams, scores) = _new_or_old(60, seed=0), _new_or_old(60, seed=1)
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, regularization=REGULARIZATION_GRID).fit(
        train, train_beams, train_scores)
    evaluator = Evaluator(test, BEHAVIORS, k_values=(1,), progress=False)
    assert evaluator.score(residual.rank(test, 10, beams, scores), "residual").target["HR@1"] == 1.0
    assert evaluator.evaluate(residual.rule).target["HR@1"] == 0.5  # the rule gets the returns only
    assert residual.weights["regularization"] > 0 and residual.weights["cv_ndcg10"]["rule only"] < 1.0


@pytest.mark.realdata
def test_the_residual_rule_is_cross_fitted_on_real_cases(real_cases) -> None:
    fit = real_cases[: len(real_cases) // 2]
    rng = random.Random(0)
    counts = pd.Series([item for case in fit for item in case.history_items]).value_counts()
    beams = [[item for item in counts.index[:15] if item not in case.history_items][:10] for case in fit]
    scores = [{item: -rng.random() * 8 for item in [*row, *case.history_items]} for row, case in zip(beams, fit)]
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, regularization=REGULARIZATION_GRID,
                               gate=GATE_GRID)
    rows = residual._rows(fit, beams, scores, None)
    offsets = residual._fit_rule(fit, rows)
    rule = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(fit)
    assert residual.rule.weights == rule.weights
    gate, value = rule.weights["gate"], rule.weights["regularization"]
    fold = np.empty(len(fit), dtype=int)
    fold[np.random.default_rng(0).permutation(len(fit))] = np.arange(len(fit)) % 5
    def logits(reranker, case, pool):  # the rule's log-odds of each pool item, intercept included, by hand
        base = reranker.features(case, pool)
        full = np.hstack([base, (base[:, :, None] * reranker.case_features(case)).reshape(len(base), -1)]) if (
            gate) else base
        weights = reranker.weights
        return weights["intercept"] + ((full - np.asarray(weights["mean"])) / np.asarray(weights["scale"])) @ np.asarray(
            weights["coef"])

    for held in (0, 3):  # by hand: the rule fit without the fold, scoring GAMER's pools of the fold's cases
        inside = [case for case, f in zip(fit, fold) if f != held]
        by_hand = HistoryReranker(BEHAVIORS, use_model=False, regularization=value, gate=gate).fit(inside)
        for i in np.flatnonzero(fold == held)[:20]:
            assert offsets[i] == pytest.approx(logits(by_hand, fit[i], rows[i][0]), abs=1e-9)
        # On the logit scale the offset needs: on its own pools, the fold's rule predicts as many targets as there
        # are (the intercept's score equation), which a score without its intercept misses.
        own = [(case, by_hand.pool(case)) for case in inside]
        predicted = sum(float((1.0 / (1.0 + np.exp(-logits(by_hand, case, pool)))).sum()) for case, pool in own)
        assert predicted == pytest.approx(sum(len(set(pool) & set(case.target_items)) for case, pool in own), rel=1e-6)
    residual.fit(fit, beams, scores)
    cv = residual.weights["cv_ndcg10"]
    assert len(cv) == 1 + 2 * 2 * len(REGULARIZATION_GRID) and "rule only" in cv  # all columns, or the model's only
    assert max(cv, key=cv.get) == _chosen_key(residual.weights)

    # The model's columns alone, by hand: fold 0's fit is the optimum of the log-loss over the rule's out-of-fold
    # logit as a fixed offset (coefficient 1), the intercept (unpenalized) and GAMER's standardized MODEL_FEATURES
    # (L2 1/C); no history column.
    from scipy.optimize import minimize

    setting = (False, 1.0, True)
    labels = [np.array([item in case.target_items for item in pool]) for case, (pool, _) in zip(fit, rows)]
    held = np.flatnonzero(fold != 0)
    found = residual._cross_validate(fit, rows, labels, [setting], offsets)
    assert found[0][setting] == pytest.approx(cv["model only ungated C=1"], abs=1e-9)
    weights = found[1][setting][0]
    assert weights["features"] == list(MODEL_FEATURES)
    columns = [HISTORY_FEATURES.index(n) if n in HISTORY_FEATURES else len(HISTORY_FEATURES) + MODEL_FEATURES.index(n)
               for n in MODEL_FEATURES]
    x = np.concatenate([rows[i][1][:, columns] for i in held])
    y = np.concatenate([labels[i] for i in held])
    offset = np.concatenate([offsets[i] for i in held])
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)

    def objective(w):
        logits = offset + w[0] + z @ w[1:]
        return np.logaddexp(0, logits).sum() - logits[y].sum() + w[1:] @ w[1:] / 2

    exact = minimize(objective, np.zeros(1 + len(columns)), method="BFGS", options={"gtol": 1e-9}).x
    assert "rule_coef" not in weights and [weights["intercept"], *weights["coef"]] == pytest.approx(exact, abs=1e-4)

    # New cases: "the rule alone" ranks exactly as the rule itself (Repeat+learned, refit on every case), not as the
    # mean of its fold fits, which orders some of these cases otherwise.
    test = real_cases[len(real_cases) // 2:]
    test_beams = [[item for item in counts.index[:15] if item not in case.history_items][:10] for case in test]
    test_scores = [{item: -rng.random() * 8 for item in [*row, *case.history_items]} for row, case in zip(test_beams, test)]
    residual.weights |= {"features": [], "coef": [], "mean": [], "scale": [], "regularization": 0.0}
    own = rule.rank(test, 20)
    for row, mine, case in zip(residual.rank(test, 50, test_beams, test_scores), own, test):
        assert [item for item in row if item in case.history_items][:len(mine)] == mine


def _chosen_key(weights: dict) -> str:
    if weights["regularization"] == 0:
        return "rule only"
    return (f"{'model only ' if weights['model_only'] else ''}{'gated' if weights['gate'] else 'ungated'} "
            f"C={weights['regularization']:g}")


def test_a_residual_fit_may_give_the_model_its_columns_alone_and_ranks_without_rebuilding_the_index(monkeypatch) -> None:
    (train, train_beams, train_scores), (test, beams, scores) = _new_or_old(60, seed=0), _new_or_old(60, seed=1)
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, regularization=REGULARIZATION_GRID,
                               gate=GATE_GRID).fit(train, train_beams, train_scores)
    cv = residual.weights["cv_ndcg10"]
    model_only = {k: v for k, v in cv.items() if k.startswith("model only")}
    assert len(model_only) == len(REGULARIZATION_GRID) * len(GATE_GRID)
    # On top of the rule's fixed logit, GAMER's log-probs alone add to it (only the history items' log-probs tell a
    # return from a new item here, and shrunk columns cannot undo all of the rule's preference for the last item);
    # with the history columns too, the fit ranks every held-out case right.
    assert cv["rule only"] < max(model_only.values()) < max(cv.values()) == pytest.approx(1.0)
    gated = residual.gated_feature_names(True, model_only=True)
    assert not set(gated) & set(HISTORY_FEATURES) and all(n.split("*")[0] in MODEL_FEATURES for n in gated)
    assert len(gated) == len(MODEL_FEATURES) * (1 + len(CASE_FEATURES))
    ranked = residual.rank(test, 10, beams, scores)

    def rebuilt(*args, **kwargs):
        raise AssertionError("the feature-name index was rebuilt while ranking")

    monkeypatch.setattr(residual, "gated_feature_names", rebuilt)
    assert residual.rank(test, 10, beams, scores) == ranked  # every case, every fold fit: the index computed once


def test_a_new_items_residual_inserts_gamers_items_and_keeps_the_rules_order(tmp_path) -> None:
    train, train_beams, train_explored, train_scores = _returns_or_explores(60, seed=0)
    test, generated, explored, scores = _returns_or_explores(60, seed=1)
    residual = HistoryReranker(BEHAVIORS, residual=True, residual_items="new", regularization=REGULARIZATION_GRID,
                               gate=GATE_GRID).fit(train, train_beams, train_scores, train_explored)
    ranked = residual.rank(test, 10, generated, scores, explored)
    evaluator = Evaluator(test, BEHAVIORS, k_values=(1,), progress=False, known_items=[])
    # GAMER's confident explore beam goes first where the user explores; the rule's last item where the user returns.
    assert evaluator.score(ranked, "new items").target["HR@1"] == 1.0
    assert evaluator.evaluate(residual.rule).target["HR@1"] == 0.5
    cv = residual.weights["cv_ndcg10"]
    assert len(cv) == 1 + 2 * len(GATE_GRID) * len(REGULARIZATION_GRID) and cv["rule only"] < max(cv.values())
    rows = residual._rows(test, generated, scores, explored)
    assert [list(mask) for mask in residual._new_items(test, rows)] == [
        [item in new for item in pool] for (pool, _), new in zip(rows, explored)]  # the rule's pool: the history
    for row, own, case in zip(ranked, residual.rule.rank(test, 10), test):  # GAMER never reorders the user's items
        assert [item for item in row if item in case.history_items] == own
    # The rule alone: the new items after the rule's, so the top of every list is the rule's.
    alone = HistoryReranker.from_dict(residual.to_dict() | {"weights": residual.weights | {
        "features": [], "coef": [], "mean": [], "scale": [], "regularization": 0.0}})
    assert [row[:3] for row in alone.rank(test, 10, generated, scores, explored)] == residual.rule.rank(test, 3)
    residual.save(tmp_path / "new.json")
    again = HistoryReranker.load(tmp_path / "new.json")
    assert again.residual_items == "new" and again.rank(test, 10, generated, scores, explored) == ranked
    with pytest.raises(ValueError, match="residual_items must be one of .* with residual=False"):
        HistoryReranker(BEHAVIORS, residual_items="new")
    with pytest.raises(ValueError, match="residual_items must be one of"):
        HistoryReranker(BEHAVIORS, residual=True, residual_items="some")


def test_a_new_items_residual_is_the_rule_alone_when_no_new_item_is_a_target() -> None:
    train, test = _frequent_not_recent(80, seed=0), _frequent_not_recent(80, seed=1)
    (train_beams, train_scores), (beams, scores) = _noise_beams(train, 0), _noise_beams(test, 1)
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, residual_items="new",
                               regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(train, train_beams, train_scores)
    assert residual.weights["regularization"] == 0.0 and "cv_ndcg10" not in residual.weights
    assert residual.weights["fit_positives"] == 0 and residual.weights["fit_rows"] == 5 * len(train)
    rule = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(train)
    own = rule.rank(test, 10)
    assert [row[:len(mine)] for row, mine in zip(residual.rank(test, 10, beams, scores), own)] == own


@pytest.mark.realdata
def test_a_new_items_residual_fits_gamers_items_alone_on_real_cases(real_cases) -> None:
    from scipy.optimize import minimize

    fit, test = real_cases[: len(real_cases) // 2], real_cases[len(real_cases) // 2:]
    rng = random.Random(0)
    counts = pd.Series([item for case in fit for item in case.history_items]).value_counts()

    def beams_of(cases):  # frequent items the user has not touched, and in every other case a new target; noise log-probs
        beams = [[item for item in counts.index[:15] if item not in case.history_items][:10] for case in cases]
        for i, (row, case) in enumerate(zip(beams, cases)):
            if i % 2 and case.target_items[0] not in [*row, *case.history_items]:
                row.insert(rng.randrange(len(row) + 1), case.target_items[0])
        return beams, [{item: -rng.random() * 8 for item in [*row, *case.history_items]} for row, case in zip(beams, cases)]

    (beams, scores), (test_beams, test_scores) = beams_of(fit), beams_of(test)
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, residual_items="new",
                               regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(fit, beams, scores)
    rule = HistoryReranker(BEHAVIORS, use_model=False, regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(fit)
    assert residual.rule.weights == rule.weights and len(residual.weights["cv_ndcg10"]) == 17

    # Fold 0's model-only fit, by hand: the log-loss over GAMER's new items' rows alone (no offset), an unpenalized
    # intercept and GAMER's standardized MODEL_FEATURES (L2 1/C).
    rows = residual._rows(fit, beams, scores, None)
    new = residual._new_items(fit, rows)
    assert all(list(mask) == [item not in case.history_items for item in pool]
               for mask, case, (pool, _) in zip(new, fit, rows))
    labels = [np.array([item in case.target_items for item in pool]) for case, (pool, _) in zip(fit, rows)]
    setting = (False, 1.0, True)
    found = residual._cross_validate(fit, rows, labels, [setting], residual._fit_rule(fit, rows), new)
    assert found[0][setting] == pytest.approx(residual.weights["cv_ndcg10"]["model only ungated C=1"], abs=1e-9)
    fold = np.empty(len(fit), dtype=int)
    fold[np.random.default_rng(0).permutation(len(fit))] = np.arange(len(fit)) % 5
    columns = [len(HISTORY_FEATURES) + MODEL_FEATURES.index(n) for n in MODEL_FEATURES]
    held = np.flatnonzero(fold != 0)
    x = np.concatenate([rows[i][1][new[i]][:, columns] for i in held])
    y = np.concatenate([labels[i][new[i]] for i in held])
    assert 0 < y.sum() < len(y)
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)

    def objective(w):
        logits = w[0] + z @ w[1:]
        return np.logaddexp(0, logits).sum() - logits[y].sum() + w[1:] @ w[1:] / 2

    exact = minimize(objective, np.zeros(1 + len(columns)), method="BFGS", options={"gtol": 1e-9}).x
    weights = found[1][setting][0]
    assert [weights["intercept"], *weights["coef"]] == pytest.approx(exact, abs=1e-4)

    # New cases: whatever the setting, the user's own items stay in Repeat+learned's order; the rule alone is its list.
    own = rule.rank(test, 50)
    for row, mine, case in zip(residual.rank(test, 50, test_beams, test_scores), own, test):
        assert [item for item in row if item in case.history_items] == mine
    residual.weights |= {"features": [], "coef": [], "mean": [], "scale": [], "regularization": 0.0}
    top = rule.rank(test, 10)
    assert [row[:len(mine)] for row, mine in zip(residual.rank(test, 10, test_beams, test_scores), top)] == top


def test_a_new_items_residual_cross_validates_when_a_fold_holds_no_new_target() -> None:
    """One fit case's target is a new item of GAMER's beams: the fold that holds it out has no new-item target to fit
    on, and is scored as the rule alone instead of stopping the fit (taobao_cml_partial had 6 such targets)."""
    train = _frequent_not_recent(80, seed=0)
    beams, scores = _noise_beams(train, 0)
    train[0] = replace(train[0], target_items=(beams[0][0],))
    residual = HistoryReranker(BEHAVIORS, explore=False, residual=True, residual_items="new",
                               regularization=REGULARIZATION_GRID, gate=GATE_GRID).fit(train, beams, scores)
    assert len(residual.weights["cv_ndcg10"]) == 1 + 2 * len(GATE_GRID) * len(REGULARIZATION_GRID)
    assert residual.weights["fit_positives"] == 1
