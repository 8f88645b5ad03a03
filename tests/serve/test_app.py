"""The real server in a subprocess: answers equal to `model.recommend` alone, batching, bad input, metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import MAX_HISTORY, NUM_ITEMS, ServerProcess, random_histories

SCORE_TOLERANCE = 1e-4  # batched float32 kernels round differently from a batch of one (measured: ~2e-6)


def alone(loaded, history: list[list[str]], behavior: str = "buy", top_k: int = 10, num_beams: int = 20,
          **kwargs: Any) -> list[tuple[str, float]]:
    model, tokenizer = loaded
    [ranked] = model.recommend(tokenizer, [[tuple(pair) for pair in history]], behavior=behavior, top_k=top_k,
                               num_beams=max(num_beams, top_k), max_history=MAX_HISTORY, **kwargs)
    return ranked


def assert_same(response: dict[str, Any], expected: list[tuple[str, float]]) -> None:
    assert [item["item_id"] for item in response["items"]] == [item for item, _ in expected]
    assert [item["score"] for item in response["items"]] == pytest.approx([s for _, s in expected], abs=SCORE_TOLERANCE)


async def post_all(url: str, bodies: list[Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*[
            client.post(f"{url}/v1/recommend", content=body if isinstance(body, str) else json.dumps(body),
                        headers={"content-type": "application/json"})
            for body in bodies
        ])


def parse_metrics(text: str) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric(server: ServerProcess, name: str) -> dict[tuple, float]:
    samples = parse_metrics(httpx.get(f"{server.url}/metrics").text)
    return {key: value for key, value in samples.items() if key[0].startswith(name)}


def test_concurrent_answers_equal_recommend_alone_and_are_batched(server: ServerProcess, loaded) -> None:
    _, tokenizer = loaded
    histories = random_histories(tokenizer, 24, seed=3)
    behaviors = ["click", "cart", "buy"]
    bodies = [{"history": h, "behavior": behaviors[i % 3], "top_k": 1 + i % 12} for i, h in enumerate(histories)]
    before = metric(server, "gamer_batch_size")
    responses = asyncio.run(post_all(server.url, bodies))
    for body, response in zip(bodies, responses):
        assert response.status_code == 200, response.text
        assert_same(response.json(), alone(loaded, body["history"], body["behavior"], body["top_k"]))
        assert response.json()["model"] == "gamer-tiny" and response.json()["truncated"] is False
    after = metric(server, "gamer_batch_size")
    count, ones = ("gamer_batch_size_count", ()), ("gamer_batch_size_bucket", (("le", "1.0"),))
    batches, singles = after[count] - before.get(count, 0), after[ones] - before.get(ones, 0)
    assert batches < len(bodies) and batches > singles, "concurrent requests were not decoded together"
    waited = metric(server, "gamer_queue_wait_seconds")[("gamer_queue_wait_seconds_count", ())]
    assert waited >= len(bodies)  # every request's wait for its batch is recorded


@pytest.mark.parametrize("options", [
    {"exclude": ["sku3", "sku8", "no-such-item"]},
    {"exclude_history": True},
    {"num_beams": 40, "top_k": 25},
])
def test_decoding_options_equal_recommend(server: ServerProcess, loaded, options: dict[str, Any]) -> None:
    _, tokenizer = loaded
    history = random_histories(tokenizer, 1, seed=5)[0] + [["cart", "sku8"]]
    response = httpx.post(f"{server.url}/v1/recommend", json={"history": history, **options}, timeout=60)
    assert response.status_code == 200, response.text
    top_k, num_beams = options.get("top_k", 10), options.get("num_beams", 20)
    expected = alone(loaded, history, top_k=top_k, num_beams=num_beams,
                     exclude_history=options.get("exclude_history", False),
                     exclude_items=[set(options.get("exclude", []))])
    assert_same(response.json(), expected)
    if options.get("exclude"):
        assert not {"sku3", "sku8"} & {item["item_id"] for item in response.json()["items"]}


def test_long_history_is_truncated_to_the_most_recent(server: ServerProcess, loaded) -> None:
    _, tokenizer = loaded
    history = [pair for single in random_histories(tokenizer, 30, seed=8, max_len=1) for pair in single]
    response = httpx.post(f"{server.url}/v1/recommend", json={"history": history}, timeout=60).json()
    assert response["truncated"] is True
    assert_same(response, alone(loaded, history))
    assert_same(response, alone(loaded, history[-MAX_HISTORY:]))


def test_unknown_items_skipped_on_request(server: ServerProcess, loaded) -> None:
    history = [["click", "sku1"], ["click", "ghost"], ["view", "sku2"], ["buy", "sku4"]]
    response = httpx.post(f"{server.url}/v1/recommend", json={"history": history, "unknown_items": "skip"}).json()
    assert_same(response, alone(loaded, history, on_unknown="skip"))


def test_batch_endpoint_answers_in_order(server: ServerProcess, loaded) -> None:
    _, tokenizer = loaded
    requests = [{"history": h, "top_k": 5, "behavior": "click"} for h in random_histories(tokenizer, 6, seed=9)]
    response = httpx.post(f"{server.url}/v1/recommend/batch", json={"requests": requests}, timeout=60)
    assert response.status_code == 200, response.text
    for request, result in zip(requests, response.json()["results"], strict=True):
        assert_same(result, alone(loaded, request["history"], "click", 5))


GOOD = {"history": [["click", "sku1"], ["cart", "sku2"]], "behavior": "buy", "top_k": 5}
BAD_REQUESTS = [
    pytest.param('{"history": [["click", "sku1"]', 400, "body", id="malformed-json"),
    pytest.param({"behavior": "buy"}, 422, "history", id="missing-history"),
    pytest.param({"history": []}, 422, "history", id="empty-history"),
    pytest.param({"history": [["click"]]}, 422, "history.0.1", id="not-a-pair"),
    pytest.param({**GOOD, "behavior": "view"}, 422, "behavior", id="unknown-behavior"),
    pytest.param({"history": [["view", "sku1"]]}, 422, "history.0.0", id="unknown-history-behavior"),
    pytest.param({"history": [["click", "sku1"], ["cart", "ghost"]]}, 422, "history.1.1", id="unknown-item"),
    pytest.param({"history": [["click", "ghost"]], "unknown_items": "skip"}, 422, "history", id="nothing-known"),
    pytest.param({**GOOD, "top_k": 0}, 422, "top_k", id="top-k-zero"),
    pytest.param({**GOOD, "top_k": -3}, 422, "top_k", id="top-k-negative"),
    pytest.param({**GOOD, "top_k": NUM_ITEMS + 1}, 422, "top_k", id="top-k-past-catalogue"),
    pytest.param({**GOOD, "top_k": "5"}, 422, "top_k", id="top-k-string"),
    pytest.param({**GOOD, "top_k": 10, "num_beams": 5}, 422, "num_beams", id="beams-below-top-k"),
    pytest.param({**GOOD, "unknown_items": "ignore"}, 422, "unknown_items", id="bad-unknown-policy"),
    pytest.param({**GOOD, "topk": 5}, 422, "topk", id="misspelt-field"),
    pytest.param({"history": [["click", "sku1"]] * 5000}, 413, "body", id="body-too-large"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_REQUESTS)
def test_bad_input_is_a_named_4xx(server: ServerProcess, body: Any, status: int, field: str) -> None:
    [response] = asyncio.run(post_all(server.url, [body]))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"]


def test_bad_requests_fail_alone_inside_a_batch(server: ServerProcess, loaded) -> None:
    _, tokenizer = loaded
    good = [{"history": h, "top_k": 4} for h in random_histories(tokenizer, 10, seed=11)]
    bad = [param.values[0] for param in BAD_REQUESTS]
    mixed = [body for pair in zip(good, bad) for body in pair] + bad[len(good):]
    responses = asyncio.run(post_all(server.url, mixed))
    by_body = {json.dumps(body) if not isinstance(body, str) else body: r for body, r in zip(mixed, responses)}
    for body in good:
        response = by_body[json.dumps(body)]
        assert response.status_code == 200
        assert_same(response.json(), alone(loaded, body["history"], top_k=4))
    assert all(400 <= by_body[json.dumps(b) if not isinstance(b, str) else b].status_code < 500 for b in bad)
    assert httpx.get(f"{server.url}/ready").status_code == 200


def test_batch_body_with_one_bad_request_names_it(server: ServerProcess) -> None:
    body = {"requests": [GOOD, {**GOOD, "behavior": "view"}]}
    response = httpx.post(f"{server.url}/v1/recommend/batch", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "requests.1.behavior"


def test_health_answers_while_a_batch_decodes(server: ServerProcess, loaded) -> None:
    """/health answered between two /metrics reads that both show the same batch inside recommend()."""
    _, tokenizer = loaded
    heavy = {"requests": [{"history": h, "top_k": 100, "num_beams": 200}
                          for h in random_histories(tokenizer, 64, seed=13, max_len=MAX_HISTORY)]}

    async def decoder_state(client: httpx.AsyncClient) -> tuple[float, float]:
        """(batches decoding now, batches started so far)."""
        samples = parse_metrics((await client.get(f"{server.url}/metrics")).text)
        return samples[("gamer_batches_decoding", ())], samples[("gamer_batch_size_count", ())]

    async def race() -> tuple[float, float] | None:
        async with httpx.AsyncClient(timeout=120) as client:
            decoding = asyncio.gather(*(client.post(f"{server.url}/v1/recommend/batch", json=heavy) for _ in range(2)))
            during = None
            while not decoding.done() and during is None:
                before = await decoder_state(client)
                health = await client.get(f"{server.url}/health")
                if health.status_code == 200 and before[0] == 1 and await decoder_state(client) == before:
                    during = before
            assert all(response.status_code == 200 for response in await decoding)
            assert (await decoder_state(client))[0] == 0
            return during

    assert asyncio.run(race()) is not None, "/health never answered while a batch was decoding"


def test_metrics_in_prometheus_format(server: ServerProcess) -> None:
    httpx.post(f"{server.url}/v1/recommend", json=GOOD)
    httpx.post(f"{server.url}/v1/recommend", json={**GOOD, "top_k": 0})
    samples = metric(server, "gamer_")
    names = {name for name, _ in samples}
    assert {"gamer_requests_total", "gamer_request_latency_seconds_bucket", "gamer_batch_size_bucket",
            "gamer_queue_depth", "gamer_batches_decoding", "gamer_queue_wait_seconds_bucket",
            "gamer_batch_decode_seconds_bucket", "gamer_recommend_calls_total"} <= names
    # a batch is decoded in at least one recommend() call, and takes time
    assert samples[("gamer_recommend_calls_total", ())] >= samples[("gamer_batch_size_count", ())] >= 1
    assert samples[("gamer_batch_decode_seconds_sum", ())] > 0
    assert samples[("gamer_requests_total", (("path", "/v1/recommend"), ("status", "200")))] >= 1
    assert samples[("gamer_requests_total", (("path", "/v1/recommend"), ("status", "422")))] >= 1


def test_openapi_describes_the_routes(server: ServerProcess) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/recommend", "/v1/recommend/batch", "/health", "/ready", "/metrics"} <= set(schema["paths"])
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert httpx.get(f"{server.url}/ready").json() == {"status": "ready", "model": "gamer-tiny"}
