"""A tiny checkpoint and the real server in a subprocess on a free loopback port, shared by the session.

The server is the README's `gamer-hf serve` command (its batching flags as written) plus two limits
the tests need; one process serves every test until one of them ends it (the draining SIGTERM test),
after which the next test that asks gets a fresh one.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast

BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}
NUM_ITEMS = 150
MAX_HISTORY = 12
README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def random_histories(tokenizer: GamerTokenizerFast, count: int, seed: int, max_len: int = 8) -> list[list[list[str]]]:
    rng = random.Random(seed)
    items, behaviors = list(tokenizer.item_index), list(tokenizer.behaviors)
    return [[[rng.choice(behaviors), rng.choice(items)] for _ in range(rng.randint(1, max_len))] for _ in range(count)]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset with random weights over 150 items, saved as a user's checkpoint folder."""
    rng = random.Random(0)
    codes = rng.sample([(a, b, c) for a in range(6) for b in range(6) for c in range(6)], NUM_ITEMS)
    tokenizer = GamerTokenizerFast.from_items({f"sku{i}": code for i, code in enumerate(codes)},
                                              behaviors=BEHAVIORS, codebook_size=6)
    torch.manual_seed(0)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer)).eval()
    folder = tmp_path_factory.mktemp("serve") / "gamer-tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def loaded(checkpoint: Path):
    from gamer_hf.loading import load_gamer

    return load_gamer(checkpoint, device="cpu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`gamer-hf serve` as a user starts it; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, model: Path | str, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.terminated = False
        command = [sys.executable, "-m", "gamer_hf.cli", "serve", "--model", str(model), "--port", str(self.port),
                   "--log-level", "warning", *flags]
        self.process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 300.0) -> "ServerProcess":
        """Polls /ready; stops the process when it exits or misses the deadline (it is never left behind)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.process.kill()
        raise AssertionError(f"server not ready in {timeout:.0f} s:\n{self.process.communicate()[0][-3000:]}")

    def terminate(self) -> None:
        """One SIGTERM (a second one would stop the server without draining)."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self, timeout: float = 60.0) -> int:
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""


def readme_serve_lines() -> tuple[list[str], list[str]]:
    """The README's "Serve" block: the `gamer-hf serve` command and the `curl` example, as argument lists."""
    block = re.search(r"```bash\n(.*?)```", README.split("## Serve", 1)[1], re.S).group(1)
    [serve] = [shlex.split(line) for line in block.splitlines() if line.startswith("gamer-hf serve")]
    [curl] = [shlex.split(line) for line in block.splitlines() if line.startswith("curl ")]
    return serve, curl


class Servers:
    """The session's server: started on first use, started again after a test has stopped it."""

    def __init__(self, checkpoint: Path) -> None:
        serve, _ = readme_serve_lines()
        flags = dict(zip(serve[2::2], serve[3::2], strict=True))
        assert flags.pop("--model") == "gamer" and flags.pop("--port") == "8000"
        # a short max history (the truncation test) and a small body limit (the 413 test), which the README leaves out
        self.flags = [part for pair in flags.items() for part in pair] + [
            "--max-history", str(MAX_HISTORY), "--max-body-bytes", "65536"]
        self.checkpoint, self.current, self.failure = checkpoint, None, None

    def get(self) -> ServerProcess:
        if self.failure is not None:  # one failed start is told to every test, not retried by each
            raise AssertionError(self.failure)
        if self.current is None or self.current.terminated:
            try:
                self.current = ServerProcess(self.checkpoint, *self.flags).wait_ready()
            except AssertionError as error:
                self.failure = str(error)
                raise
        return self.current

    def close(self) -> None:
        if self.current is not None and not self.current.terminated:
            assert self.current.stop() == 0, self.current.output()


@pytest.fixture(scope="session")
def servers(checkpoint: Path) -> Iterator[Servers]:
    pool = Servers(checkpoint)
    yield pool
    pool.close()


@pytest.fixture
def server(servers: Servers) -> ServerProcess:
    """The running server of the session (the README's command on the tiny checkpoint, on a free port)."""
    return servers.get()
