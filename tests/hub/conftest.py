"""Fixtures that start the local Hub-API server: `hub_server` for subprocess clients, `hub_in_process`
for clients in the test process itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .hub_server import HubServer


@pytest.fixture
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A fresh server (empty repo storage, empty client HF_HOME) on a random 127.0.0.1 port.

    Use ``hub_server.env()`` / ``hub_server.run_client(code)`` to run a client in a subprocess,
    ``hub_server.url`` and ``hub_server.token`` for anything else. A request that crashed the
    server fails the test at teardown with the server-side traceback.
    """
    base = tmp_path_factory.mktemp("hub")
    with HubServer(base / "repos", base / "hf_home") as server:
        yield server
    assert not server.errors, "the Hub test server crashed:\n" + "\n".join(server.errors)


@pytest.fixture
def hub_in_process(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """`hub_server`, with this process's huggingface_hub/transformers pointed at it (undone after)."""
    hub_server.patch_in_process(monkeypatch)
    return hub_server
