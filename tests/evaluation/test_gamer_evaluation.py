"""End to end: a tiny untrained GAMER scored through GamerRecommender and the Evaluator."""

from __future__ import annotations

import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.evaluation import EvalCase, Evaluator, GamerRecommender, HistoryMixer, MostPopular

CATALOGUE = {f"i{n}": ((n - 1) // 4, (n - 1) % 4) for n in range(1, 13)}  # 12 items, 3 x 4 codes


@pytest.fixture(scope="module")
def tok() -> GamerTokenizerFast:
    return GamerTokenizerFast.from_items(CATALOGUE, behaviors={"click": 1, "cart": 2, "buy": 3}, codebook_size=[3, 4])


@pytest.fixture(scope="module")
def model(tok: GamerTokenizerFast) -> GamerForCausalLM:
    torch.manual_seed(0)
    return GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tok)).eval()


def test_tiny_model_through_the_evaluator(model, tok, cases, behaviors, train_events) -> None:
    evaluator = Evaluator(cases, behaviors, batch_size=3, progress=False)
    gamer = GamerRecommender(model, tok, num_beams=10, max_history=8)
    generated = evaluator.predict(gamer.generate)
    for scored in generated:
        items = [item for item, _ in scored]
        scores = [score for _, score in scored]
        assert len(items) == len(set(items)) == evaluator.top_k and set(items) <= set(CATALOGUE)
        assert scores == sorted(scores, reverse=True)
    report = evaluator.evaluate_all({"GAMER": gamer, "MostPopular": MostPopular().fit(train_events)})
    result = report["GAMER"]
    assert result.num_cases == {"click": 3, "cart": 1, "buy": 3}
    assert result.metrics == evaluator.score([[i for i, _ in s] for s in generated], "again").metrics
    assert set(result.target) == {f"{m}@{k}" for m in ("HR", "Recall", "NDCG") for k in (1, 5, 10)}
    assert "| GAMER | buy (target) | 3 |" in report.to_markdown()


def test_exclude_history_skip_unknown_and_mix(model, tok) -> None:
    case = EvalCase("u", ("click", "click", "cart"), ("i1", "i2", "not-in-catalogue"), "buy", ("i3",))
    with pytest.raises(ValueError, match="not-in-catalogue"):
        GamerRecommender(model, tok).generate([case], top_k=5)
    [excluded] = GamerRecommender(model, tok, exclude_history=True, on_unknown="skip").recommend([case], top_k=5)
    assert len(excluded) == 5 and not {"i1", "i2"} & set(excluded)
    mixed = GamerRecommender(
        model, tok, exclude_history=True, on_unknown="skip", mixer=HistoryMixer(repeat_slots=1)
    ).recommend([case], top_k=5)
    assert mixed == [["not-in-catalogue"] + excluded[:4]]  # the repeat part uses the raw history: any item
