"""The evaluation protocol's rows (what `gamer-hf evaluate` and the quality bench both score): the rules, one
GAMER checkpoint with its blends, and the mixer chosen on validation cases."""

from __future__ import annotations

import random

import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.evaluation import (
    EXPLORE_FEATURES,
    MIXER_GRID,
    RULES,
    EvalCase,
    Evaluator,
    GamerRecommender,
    HistoryMixer,
    HistoryReranker,
    MostPopular,
    choose_mixer,
    gamer_rows,
    rule_rows,
)

BEHAVIORS = {"click": 1, "cart": 2, "buy": 3}
CATALOGUE = {f"i{n}": ((n - 1) // 4, (n - 1) % 4) for n in range(1, 13)}  # 12 items, 3 x 4 codes


def _cases(count: int, seed: int) -> list[EvalCase]:
    """Buy cases whose target is a history item in about half of them (repeat) and a new item otherwise."""
    rng = random.Random(seed)
    out = []
    for user in range(count):
        history = tuple(rng.sample(sorted(CATALOGUE), 4))
        target = history[rng.randrange(4)] if user % 2 else rng.choice(sorted(set(CATALOGUE) - set(history)))
        out.append(EvalCase(f"u{seed}-{user}", ("click", "cart", "click", "click"), history, "buy", (target,)))
    return out


@pytest.fixture(scope="module")
def gamer() -> GamerRecommender:
    tok = GamerTokenizerFast.from_items(CATALOGUE, behaviors=BEHAVIORS, codebook_size=[3, 4])
    torch.manual_seed(0)
    return GamerRecommender(GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tok)).eval(), tok, num_beams=10)


@pytest.fixture(scope="module")
def popular() -> MostPopular:
    train = {"behaviors": [["click", "buy"], ["cart", "buy", "click"]], "items": [["i1", "i2"], ["i3", "i2", "i1"]]}
    return MostPopular().fit(train)  # the columns of a prepared train split


def test_popularity_counts_prepared_training_rows(popular) -> None:
    assert popular.ranking("buy", 3)[0] == "i2" and popular.overall["i1"] == 2
    with pytest.raises(ValueError, match="training row 0: behaviors has 2 entries, items 1"):
        MostPopular().fit({"behaviors": [["click", "buy"]], "items": [["i1"]]})


def test_choose_mixer_is_the_best_of_the_grid_on_its_own_cases() -> None:
    cases = _cases(20, seed=1)
    evaluator = Evaluator(cases, BEHAVIORS, progress=False)
    new_items = [[(item, -float(rank)) for rank, item in enumerate(sorted(set(CATALOGUE) - set(c.history_items)))]
                 for c in cases]  # beams that never hold a history item
    mixer, score, candidates = choose_mixer(evaluator, new_items)
    by_hand = [(m, evaluator.score([m.mix(row, c, 10) for row, c in zip(new_items, cases)], "m").target["NDCG@10"])
               for m in MIXER_GRID]
    assert candidates == by_hand and score == max(s for _, s in by_hand)
    assert mixer == next(m for m, s in by_hand if s == score)  # ties go to the earlier mixer
    only, _, _ = choose_mixer(evaluator, new_items, [HistoryMixer(alpha=0.0)])
    assert only == HistoryMixer(alpha=0.0)
    with pytest.raises(ValueError, match="at least one"):
        choose_mixer(evaluator, new_items, [])


def test_rule_rows_score_every_rule_and_fit_the_learned_one_on_validation(popular) -> None:
    evaluator = Evaluator(_cases(16, seed=2), BEHAVIORS, progress=False)
    validation = _cases(12, seed=3)
    rows = rule_rows(evaluator, popular, validation)
    assert list(rows) == list(RULES) and all(row.result.baseline for row in rows.values())
    assert rows["Repeat+learned"].details["reranker"]["weights"]["fit_cases"] == 12
    assert rows["MostPopular"].result.per_case == evaluator.evaluate(popular, "MostPopular").per_case
    assert list(rule_rows(evaluator, popular)) == ["MostPopular", "Repeat", "Repeat+popular"]  # nothing to fit on
    with pytest.raises(ValueError, match="Repeat\\+typo"):
        rule_rows(evaluator, popular, names=["Repeat+typo"])


def test_gamer_rows_cut_every_blend_from_one_decoding(gamer, popular, monkeypatch) -> None:
    cases, validation = _cases(16, seed=4), _cases(12, seed=5)
    evaluator = Evaluator(cases, BEHAVIORS, progress=False)
    beams = gamer.generate(cases, gamer.num_beams)
    calls = []
    generate = gamer.generate
    monkeypatch.setattr(gamer, "generate", lambda batch, top_k, exclude_history=None: calls.append(
        (len(batch), bool(exclude_history))) or generate(batch, top_k, exclude_history))
    rows = gamer_rows(evaluator, gamer, validation=validation, popular=popular, repeat_slots=2, rerank_ablation=True)
    for excluded in (False, True):  # test and validation beams decoded once each, plain and with the history excluded
        assert sum(n for n, e in calls if e == excluded) == len(cases) + len(validation)
    assert list(rows) == ["GAMER", "GAMER:no-history", "GAMER+repeat2", "GAMER+mix", "GAMER+rerank",
                          "GAMER+rerank:plain-beams"]
    explored = generate(cases, gamer.num_beams, exclude_history=True)
    assert rows["GAMER:no-history"].result.per_case == evaluator.score([[i for i, _ in r] for r in explored], "x").per_case
    assert not any(set(i for i, _ in row) & set(case.history_items) for row, case in zip(explored, cases))
    assert rows["GAMER"].result.per_case == evaluator.score([[i for i, _ in row] for row in beams], "x").per_case
    mixed = [HistoryMixer(repeat_slots=2).mix(row, case, 10) for row, case in zip(beams, cases)]
    assert rows["GAMER+repeat2"].result.per_case == evaluator.score(mixed, "x").per_case
    mix = rows["GAMER+mix"].details
    held_out = Evaluator(validation, BEHAVIORS, progress=False)
    chosen, score, _ = choose_mixer(held_out, generate(validation, gamer.num_beams))
    assert mix["mixer"] == {"repeat_slots": chosen.repeat_slots, "alpha": chosen.alpha, "behaviors": None}
    assert mix["validation_ndcg10"] == score and len(mix["candidates"]) == len(MIXER_GRID)
    reranker = rows["GAMER+rerank"].details["reranker"]
    assert reranker["use_model"] and reranker["weights"]["fit_cases"] == len(validation)  # never the test cases
    ablation = rows["GAMER+rerank:plain-beams"].details["reranker"]
    assert reranker["explore"] and not ablation["explore"]
    # The explore features (what CV fits of them may be no column at all: the rule alone).
    candidate = [HistoryReranker.from_dict(fitted, popular).feature_names for fitted in (reranker, ablation)]
    assert candidate[0] == candidate[1] + EXPLORE_FEATURES
    assert not any(row.result.baseline for row in rows.values())


def test_gamer_rows_without_validation_and_as_a_baseline(gamer) -> None:
    evaluator = Evaluator(_cases(6, seed=6), BEHAVIORS, progress=False)
    rows = gamer_rows(evaluator, gamer, "TIGER", baseline=True)
    assert list(rows) == ["TIGER", "TIGER:no-history"] and all(row.result.baseline for row in rows.values())
    assert list(gamer_rows(evaluator, gamer, "TIGER", explore=False)) == ["TIGER"]
    narrow = GamerRecommender(gamer.model, gamer.tokenizer, num_beams=5)
    with pytest.raises(ValueError, match="num_beams=5 cannot fill top-10"):
        gamer_rows(evaluator, narrow)
