"""The "next-item-recommendation" pipeline: the same ranking as model.recommend, one history or many,
loaded from a folder or given objects, with clear errors for malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.modeling.configuration_gamer import CUSTOM_PIPELINES
from gamer_hf.pipeline import TASK, NextItemRecommendationPipeline, register_pipeline

BEHAVIORS = {"view": 0, "cart": 1, "buy": 2}


@pytest.fixture(scope="module")
def tokenizer() -> GamerTokenizerFast:
    index = {f"sku{i}": (i // 6, i % 6) for i in range(32)}  # 32 distinct code pairs
    return GamerTokenizerFast.from_items(index, behaviors=BEHAVIORS, codebook_size=6)


@pytest.fixture(scope="module")
def model(tokenizer: GamerTokenizerFast) -> GamerForCausalLM:
    torch.manual_seed(0)
    return GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer)).eval()


@pytest.fixture(scope="module")
def saved(model: GamerForCausalLM, tokenizer: GamerTokenizerFast, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline_checkpoint")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def recommender(model, tokenizer) -> NextItemRecommendationPipeline:
    return pipeline(TASK, model=model, tokenizer=tokenizer, device="cpu")


HISTORIES = [
    [("view", "sku1"), ("cart", "sku2"), ("view", "sku9")],
    [("buy", "sku30")],
    [],  # a user with no history yet: the prompt is the requested behavior alone
]


def _rows(result: list[list[dict]]) -> list[list[tuple[str, float]]]:
    return [[(entry["item_id"], entry["score"]) for entry in row] for row in result]


def test_one_history_gives_one_ranked_list_like_recommend(recommender, model, tokenizer) -> None:
    result = recommender(HISTORIES[0], behavior="cart", top_k=4)
    assert _rows([result]) == model.recommend(tokenizer, [HISTORIES[0]], behavior="cart", top_k=4)
    assert [set(entry) for entry in result] == [{"item_id", "score"}] * 4


def test_a_list_of_histories_gives_one_list_each(recommender, model, tokenizer) -> None:
    behaviors = ["view", "cart", "buy"]
    result = recommender(HISTORIES, behavior=behaviors, top_k=3)
    assert _rows(result) == model.recommend(tokenizer, HISTORIES, behavior=behaviors, top_k=3)


def test_defaults_are_the_target_behavior_and_ten_items(recommender, model, tokenizer) -> None:
    result = recommender(HISTORIES[0])
    assert _rows([result]) == model.recommend(tokenizer, [HISTORIES[0]], behavior="buy", top_k=10)


def test_more_items_than_the_default_beams(recommender) -> None:
    result = recommender(HISTORIES[0], top_k=25)
    assert len(result) == 25 and len({entry["item_id"] for entry in result}) == 25


def test_options_reach_recommend(recommender, model, tokenizer) -> None:
    history = HISTORIES[0] + [("view", "not-in-catalogue")]
    result = recommender(history, top_k=5, exclude_history=True, on_unknown="skip", max_history=2)
    expected = model.recommend(tokenizer, [history], top_k=5, exclude_history=True, on_unknown="skip", max_history=2)
    assert _rows([result]) == expected
    assert not {entry["item_id"] for entry in result} & {item for _, item in history}


def test_construction_arguments_apply_to_every_call(model, tokenizer) -> None:
    two = pipeline(TASK, model=model, tokenizer=tokenizer, device="cpu", top_k=2, behavior="view")
    assert _rows([two(HISTORIES[1])]) == model.recommend(tokenizer, [HISTORIES[1]], behavior="view", top_k=2)


def test_loads_model_and_tokenizer_from_a_folder(saved: Path, model, tokenizer) -> None:
    from_folder = pipeline(TASK, model=str(saved), device="cpu")
    assert isinstance(from_folder, NextItemRecommendationPipeline)
    assert isinstance(from_folder.model, GamerForCausalLM) and isinstance(from_folder.tokenizer, GamerTokenizerFast)
    assert _rows(from_folder(HISTORIES, top_k=3)) == model.recommend(tokenizer, HISTORIES, top_k=3)


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        ("view:sku1", TypeError, "takes a history"),
        ([("view", "sku1", "extra")], ValueError, "history 0, entry 0"),
        ([[("view", "sku1")], [("view", "sku1"), "sku2"]], ValueError, "history 1, entry 1"),
        ([[("view", "sku1")], "sku2"], TypeError, "history 1 must be a list"),
        ([("view", "sku-missing")], ValueError, "sku-missing"),
        ([("like", "sku1")], ValueError, "like"),
    ],
)
def test_malformed_input_is_refused_with_its_position(recommender, inputs, error, message: str) -> None:
    with pytest.raises(error, match=message):
        recommender(inputs)


def test_a_base_model_without_recommend_is_refused(saved: Path, tokenizer) -> None:
    with pytest.raises(TypeError, match="AutoModelForCausalLM"):
        pipeline(TASK, model=AutoModel.from_pretrained(saved), tokenizer=tokenizer, device="cpu")


def test_registration_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(PIPELINE_REGISTRY, "register_pipeline", lambda *args, **kwargs: calls.append(args))
    register_pipeline()  # already registered when gamer_hf.pipeline was imported
    register_pipeline()
    assert calls == []  # no re-registration, so no "already registered. Overwriting" warning
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is NextItemRecommendationPipeline


def test_a_saved_checkpoint_names_its_pipeline(saved: Path, model) -> None:
    config = json.loads((saved / "config.json").read_text())
    assert config["custom_pipelines"] == CUSTOM_PIPELINES
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_gamer.NextItemRecommendationPipeline"
    assert (saved / "pipeline_gamer.py").is_file()
    assert model.config.custom_pipelines == {}  # gamer_hf registered the task: the installed pipeline runs


REMOTE_PIPELINE = r"""
import json, sys
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY
path, histories = sys.argv[1], json.loads(sys.argv[2])
assert "next-item-recommendation" not in PIPELINE_REGISTRY.get_supported_tasks()
try:  # without trust_remote_code (and no answer to transformers' prompt), nothing of the checkpoint runs
    pipeline("next-item-recommendation", model=path)
    raise SystemExit("remote code ran without trust_remote_code")
except ValueError as error:
    assert "trust_remote_code" in str(error), error
print()  # the prompt leaves its line open
recommender = pipeline("next-item-recommendation", model=path, trust_remote_code=True, device="cpu")
again = pipeline("next-item-recommendation", model=path, trust_remote_code=True, device="cpu")
histories = [[tuple(pair) for pair in history] for history in histories]
print(json.dumps({"modules": [type(obj).__module__ for obj in (recommender, recommender.model, again)],
                  "one": recommender(histories[0], top_k=4), "many": again(histories, top_k=3)}))
"""


def test_remote_code_pipeline_without_gamer_hf(saved: Path, model, tokenizer, run_without_gamer_hf) -> None:
    out = run_without_gamer_hf(REMOTE_PIPELINE, str(saved), json.dumps(HISTORIES))
    assert all(module.startswith("transformers_modules.") for module in out["modules"]), out["modules"]
    assert _rows([out["one"]]) == model.recommend(tokenizer, HISTORIES[:1], top_k=4)
    assert _rows(out["many"]) == model.recommend(tokenizer, HISTORIES, top_k=3)
