"""Readiness before and after loading (in process, the load held back), and a draining SIGTERM (real process)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gamer_hf.errors import ConfigurationError
from gamer_hf.serve import Recommender, ServeSettings, create_app

from .conftest import ServerProcess, random_histories

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


def test_sigterm_drains_in_flight_requests_then_exits_0(checkpoint: Path, loaded) -> None:
    # A 1.5 s batching window keeps the first requests queued while the signal arrives.
    server = ServerProcess(checkpoint, "--max-wait-ms", "1500", "--max-batch-size", "64").wait_ready()
    _, tokenizer = loaded
    bodies = [{"history": h, "top_k": 5} for h in random_histories(tokenizer, 8, seed=21)]

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            in_flight = [asyncio.create_task(client.post(f"{server.url}/v1/recommend", json=b)) for b in bodies]
            while "gamer_queue_depth 8.0" not in (await client.get(f"{server.url}/metrics")).text:
                await asyncio.sleep(0.02)
            server.terminate()
            await asyncio.sleep(0.2)
            late = await client.post(f"{server.url}/v1/recommend", json=GOOD)  # the port stays open while draining
            return list(await asyncio.gather(*in_flight)), late

    answered, late = asyncio.run(scenario())
    assert [r.status_code for r in answered] == [200] * len(bodies)
    assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
    assert server.stop() == 0
