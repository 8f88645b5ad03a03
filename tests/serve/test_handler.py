"""The Inference Endpoints handler: in the package, and as `handler.py` of a pushed repo without gamer_hf."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import gamer_hf.serve.handler as handler_module
from gamer_hf.errors import HubError, InputError
from gamer_hf.hub import push_to_hub
from gamer_hf.serve import (
    EndpointHandler,
    ModelOptions,
    Recommender,
    RecommendRequest,
    RequestError,
    load_recommender,
)
from hub.hub_server import HubServer

from .test_app import alone, assert_same

REPO = "org/gamer-serve"
REQUESTS = [{"history": [["click", "sku1"], ["cart", "sku2"]], "behavior": "buy", "top_k": 5},
            {"history": [["buy", "sku7"]], "behavior": "click", "top_k": 3, "exclude": ["sku9"]}]

RUN_PUSHED_HANDLER = r"""
import hashlib, importlib.util, json, sys
sys.modules["gamer_hf"] = None  # as on an endpoint without gamer_hf: the model loads as remote code
from huggingface_hub import snapshot_download
path = snapshot_download(sys.argv[1])
# loaded as the Inference Endpoints toolkit loads a custom handler
spec = importlib.util.spec_from_file_location("handler", f"{path}/handler.py")
module = importlib.util.module_from_spec(spec)
sys.path.insert(0, path)
sys.modules["handler"] = module
spec.loader.exec_module(module)
handler = module.EndpointHandler(path)
requests = json.loads(sys.argv[2])
answers = {"single": handler({"inputs": requests[0]}), "batch": handler({"requests": requests}),
           "sha256": hashlib.sha256(open(f"{path}/handler.py", "rb").read()).hexdigest()}
try:
    handler({"history": [["view", "sku1"]]})
except ValueError as error:
    answers["error"] = [type(error).__name__, error.field, str(error)]
print(json.dumps(answers))
"""


def expected(loaded) -> list[list[tuple[str, float]]]:
    return [alone(loaded, r["history"], r["behavior"], r["top_k"], exclude_items=[set(r.get("exclude", []))])
            for r in REQUESTS]


def test_handler_in_the_package(checkpoint: Path, loaded) -> None:
    handler = EndpointHandler(str(checkpoint))
    handler.recommender.max_history = 12  # as the server fixture runs (alone() cuts to the same length)
    single, batch = handler({"inputs": REQUESTS[0]}), handler({"requests": REQUESTS})
    assert_same(single, expected(loaded)[0])
    for result, ranked in zip(batch["results"], expected(loaded), strict=True):
        assert_same(result, ranked)
    with pytest.raises(InputError, match="top_k") as caught:
        handler({"history": [["click", "sku1"]], "top_k": 0})
    assert caught.value.field == "top_k"


def test_pushed_repo_handler_runs_without_gamer_hf(checkpoint: Path, loaded, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with HubServer(tmp_path / "repos", tmp_path / "hf_home") as hub:
        hub.patch_in_process(monkeypatch)
        push_to_hub(checkpoint, REPO)
        output = hub.run_client(RUN_PUSHED_HANDLER, REPO, json.dumps(REQUESTS), OMP_NUM_THREADS="1")
        served = load_recommender(ModelOptions(REPO, device="cpu"))  # what `gamer-hf serve --model REPO` loads
        with pytest.raises(HubError, match=f"{REPO}@no-such-branch"):
            load_recommender(ModelOptions(REPO, revision="no-such-branch"))
    assert served.name == f"{REPO}@main" and served.num_items == len(loaded[1].item_index)
    answers = json.loads(output.strip().splitlines()[-1])
    assert answers["sha256"] == hashlib.sha256(Path(handler_module.__file__).read_bytes()).hexdigest()
    assert answers["error"][:2] == ["RequestError", "history.0.0"] and "unknown behavior" in answers["error"][2]
    # the pushed handler cuts histories at its default length, far above these short histories
    assert_same(answers["single"], expected(loaded)[0])
    for result, ranked in zip(answers["batch"]["results"], expected(loaded), strict=True):
        assert_same(result, ranked)


class _FailsOnOneItem:
    """The real model, except that any history holding `poison` makes recommend() raise, as a model bug would."""

    def __init__(self, model, poison: str) -> None:
        self.model, self.poison, self.config = model, poison, model.config

    def recommend(self, tokenizer, histories, **kwargs):
        if any(item == self.poison for history in histories for _, item in history):
            raise RuntimeError("decode failed")
        return self.model.recommend(tokenizer, histories, **kwargs)


def test_a_request_that_fails_inside_a_batch_fails_alone(loaded) -> None:
    model, tokenizer = loaded
    recommender = Recommender(_FailsOnOneItem(model, "sku13"), tokenizer, name="t", max_history=12)
    requests = [RecommendRequest(**body) for body in REQUESTS] + [RecommendRequest(history=[("click", "sku13")])]
    answers = recommender.run([recommender.prepare(request) for request in requests])
    assert isinstance(answers[2], RequestError) and answers[2].status == 500
    for answer, ranked in zip(answers[:2], expected(loaded), strict=True):
        assert_same(answer.model_dump(), ranked)


def test_prepare_looks_the_history_up_at_once(loaded, monkeypatch) -> None:
    """A request's history is checked against the item index in one vectorized call, not a bisect per entry."""
    model, tokenizer = loaded
    recommender = Recommender(model, tokenizer, name="t", max_history=12)
    history = [("click", "sku1"), ("cart", "ghost"), ("buy", "sku2")]
    expected = recommender.prepare(RecommendRequest(history=history, unknown_items="skip"))

    def per_item(*_):
        raise AssertionError("a history item was looked up on its own")

    monkeypatch.setattr(type(tokenizer.item_index), "row", per_item)
    assert recommender.prepare(RecommendRequest(history=history, unknown_items="skip")) == expected
    assert expected.history == [("click", "sku1"), ("buy", "sku2")]
    with pytest.raises(RequestError, match="unknown item 'ghost'") as error:
        recommender.prepare(RecommendRequest(history=history))
    assert error.value.field == "history.1.1"


@pytest.mark.parametrize(("lengths", "call_cost", "runs"), [
    ([3, 50, 2, 48, 4], 20, [[2, 0, 4], [3, 1]]),  # short and long apart: 2 x 20 + 3 x 4 + 2 x 50 < 20 + 5 x 50
    ([3, 50, 2, 48, 4], 1000, [[2, 0, 4, 3, 1]]),  # a call dearer than the padding: one call, sorted
    ([7], 100, [[0]]),
    ([], 100, []),
])
def test_length_runs_trade_padding_against_calls(lengths, call_cost, runs) -> None:
    assert handler_module.length_runs(lengths, call_cost) == runs


def test_runs_of_similar_length_answer_as_one_call(loaded) -> None:
    """Splitting a batch by history length changes no list (scores within float noise) and keeps the order."""
    model, tokenizer = loaded
    items = list(tokenizer.item_index)
    requests = [RecommendRequest(history=[("click", items[(7 * n + k) % len(items)]) for k in range(length)], top_k=5)
                for n, length in enumerate([1, 12, 2, 11, 1, 12])]
    split = Recommender(model, tokenizer, name="t", max_history=12, call_cost=1)
    whole = Recommender(model, tokenizer, name="t", max_history=12, call_cost=float("inf"))
    assert len(handler_module.length_runs([len(r.history) for r in requests], 1)) > 1
    answers = split.run([split.prepare(r) for r in requests])
    for answer, expected in zip(answers, whole.run([whole.prepare(r) for r in requests]), strict=True):
        assert_same(answer.model_dump(), [(i.item_id, i.score) for i in expected.items])
