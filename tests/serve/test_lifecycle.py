"""Readiness before and after loading (in process, the load held back) and settings checks; the README's
server: its curl example, then a draining SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gamer_hf.errors import ConfigurationError
from gamer_hf.serve import Recommender, ServeSettings, create_app

from .conftest import ServerProcess, random_histories, readme_serve_lines
from .test_app import alone, assert_same, parse_metrics

GOOD = {"history": [["click", "sku1"], ["cart", "sku2"]], "top_k": 3}


def test_ready_only_once_loaded_and_warmed_up(loaded) -> None:
    release = threading.Event()

    def load() -> Recommender:
        assert release.wait(60)
        return Recommender(*loaded, name="held-back")

    with TestClient(create_app(load)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503
        refused = client.post("/v1/recommend", json=GOOD)
        assert refused.status_code == 503 and refused.json()["error"]["field"] == "server"
        release.set()
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        assert client.post("/v1/recommend", json=GOOD).status_code == 200
        assert client.get("/ready").json() == {"status": "ready", "model": "held-back"}


def test_a_failed_load_is_told_by_ready(loaded) -> None:
    def load() -> Recommender:
        raise FileNotFoundError("model.safetensors is missing")

    with TestClient(create_app(load)) as client:
        deadline = time.monotonic() + 30
        while "missing" not in client.get("/ready").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/ready").status_code == 503
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(("setting", "value"), [("max_batch_size", 0), ("max_wait_ms", -1), ("max_body_bytes", 0)])
def test_bad_settings_refused_up_front(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=setting.replace("_", "-")):
        ServeSettings(**{setting: value})


def test_readme_curl_example(server: ServerProcess, checkpoint: Path, loaded) -> None:
    _, curl = readme_serve_lines()
    url = next(arg for arg in curl if arg.startswith("http://"))
    curl[curl.index(url)] = url.replace(":8000", f":{server.port}")
    answer = json.loads(subprocess.run(curl, capture_output=True, text=True, timeout=60, check=True).stdout)
    body = json.loads(curl[curl.index("-d") + 1])
    model, tokenizer = loaded
    [expected] = model.recommend(tokenizer, [[tuple(p) for p in body["history"]]], behavior=body["behavior"],
                                 top_k=body["top_k"], num_beams=20)
    assert_same(answer, expected)
    assert answer["model"] == checkpoint.name and answer["truncated"] is False


def test_sigterm_drains_in_flight_requests_then_exits_0(server: ServerProcess, loaded) -> None:
    """Ends the session's server (a later test gets a fresh one). The signal lands while a batch decodes
    (the decoding gauge says so) and more wait in the queue."""
    _, tokenizer = loaded
    heavy = {"requests": [{"history": h, "top_k": 100, "num_beams": 150}
                          for h in random_histories(tokenizer, 128, seed=21, max_len=12)]}
    url = server.url

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            in_flight = [asyncio.create_task(client.post(f"{url}/v1/recommend/batch", json=heavy)) for _ in range(3)]
            while True:
                samples = parse_metrics((await client.get(f"{url}/metrics")).text)
                if samples[("gamer_batches_decoding", ())] == 1 and samples[("gamer_queue_depth", ())] > 0:
                    break
                assert not all(task.done() for task in in_flight), "the load finished before it was seen queued"
                await asyncio.sleep(0.01)
            server.terminate()
            while (await client.get(f"{url}/ready")).status_code == 200:
                await asyncio.sleep(0.01)  # until the signal is handled
            late = await client.post(f"{url}/v1/recommend", json=GOOD)  # the port stays open while draining
            assert not all(task.done() for task in in_flight), "the load finished before the signal: make it wider"
            return list(await asyncio.gather(*in_flight)), late

    answered, late = asyncio.run(scenario())
    assert [r.status_code for r in answered] == [200] * 3
    assert all(len(r.json()["results"]) == 128 for r in answered)
    assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
    assert server.stop() == 0


def test_debug_log_tells_each_batch_of_closed_loop_clients(checkpoint: Path, loaded) -> None:
    """8 clients that send again as soon as they are answered, 3 rounds each, with `--refill`: every answer equals
    the request's alone, and the debug log has one line per micro-batch whose sizes add up to the requests."""
    _, tokenizer = loaded
    histories = random_histories(tokenizer, 24, seed=31)
    server = ServerProcess(checkpoint, "--log-level", "debug", "--max-wait-ms", "20", "--refill").wait_ready()
    try:
        async def client(name: int) -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=120) as http:
                return [await http.post(f"{server.url}/v1/recommend", json={"history": histories[3 * name + k]})
                        for k in range(3)]

        async def clients() -> list[list[httpx.Response]]:
            return await asyncio.gather(*(client(name) for name in range(8)))

        answered = [response for responses in asyncio.run(clients()) for response in responses]
    finally:
        code = server.stop()
    log = server.output()
    assert code == 0, log
    for name in range(8):
        for k in range(3):
            assert_same(answered[3 * name + k].json(), alone(loaded, histories[3 * name + k]))
    sizes = [int(size) for size in re.findall(r"batch of (\d+) \(queue \d+ at its start, \d+ at its end\)", log)]
    assert sum(sizes) == 24 and max(sizes) > 1
    assert f"ready: {checkpoint.name} (max batch 64, max wait 20.0 ms, refill True)" in log
