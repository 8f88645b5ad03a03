"""What a push does when something goes wrong: a refused token, an unreachable Hub, a server that dies
mid-upload and a checkpoint that fails verification each end in one line naming the endpoint or file
and what to do (exit 2 from the CLI); no repo is created for a checkpoint that fails verification,
and re-running a push that died mid-upload completes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from gamer_hf.checkpoint import record_checksums
from gamer_hf.cli import main as cli_main
from gamer_hf.errors import CheckpointError, HubError
from gamer_hf.hub import push_to_hub

from .conftest import copy_checkpoint
from .hub_server import HubServer

DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens


def _push_fails(capsys: pytest.CaptureFixture[str], folder: Path, repo_id: str, message: str) -> str:
    assert cli_main(["push", "--model", str(folder), "--repo_id", repo_id]) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("gamer-hf push: error: ")]
    assert "Traceback" not in err and re.search(message, line), err[-3000:]
    return line


def _repos(server: HubServer) -> list[Path]:
    return [path.parent for path in server.root.rglob("refs.json")]


def test_a_refused_token_names_the_endpoint_and_how_to_log_in(hub_in_process: HubServer, gamer_checkpoint: Path,
                                                               monkeypatch, capsys) -> None:
    hub_in_process.check_token = True
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_valid_token")
    line = _push_fails(capsys, gamer_checkpoint, "gamer-tiny", "refused the token")  # whoami is asked first
    assert hub_in_process.url in line and "hf auth login" in line and "401" in line
    assert _repos(hub_in_process) == []


def test_an_unreachable_hub_names_the_endpoint(hub_in_process: HubServer, gamer_checkpoint: Path, monkeypatch,
                                               capsys) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", DEAD_ENDPOINT)
    line = _push_fails(capsys, gamer_checkpoint, "org/gamer-tiny", "cannot reach the Hub")
    assert DEAD_ENDPOINT in line and "HF_ENDPOINT" in line


def test_a_push_that_dies_mid_upload_says_rerun_and_the_rerun_completes(hub_in_process: HubServer,
                                                                         gamer_checkpoint: Path, capsys) -> None:
    hub_in_process.drop_once("POST", "/api/models/org/flaky/commit/*")
    line = _push_fails(capsys, gamer_checkpoint, "org/flaky", "re-run the same push to resume")
    assert hub_in_process.url in line and "uploading to org/flaky@main" in line
    repo = hub_in_process.store.get("model", "org/flaky", authenticated=True)
    assert "model.safetensors" not in repo.resolve("main").files  # nothing was committed
    result = push_to_hub(gamer_checkpoint, "org/flaky")
    assert result.changed and "model.safetensors" in repo.resolve("main").files


def test_no_repo_is_created_for_a_checkpoint_that_fails_verification(hub_in_process: HubServer,
                                                                      gamer_checkpoint: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(gamer_checkpoint, tmp_path / "diverged")
    tensors = load_file(folder / "model.safetensors")
    name = sorted(tensors)[-1]
    tensors[name] = torch.full_like(tensors[name], float("inf"))
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    record_checksums(folder)
    with pytest.raises(CheckpointError, match="non-finite"):
        push_to_hub(folder, "gamer-diverged")  # no org: even whoami would be a request
    assert hub_in_process.requests == [] and _repos(hub_in_process) == []


def test_hub_errors_are_gamer_errors(hub_in_process: HubServer, gamer_checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", DEAD_ENDPOINT)
    with pytest.raises(HubError, match=re.escape(DEAD_ENDPOINT)):
        push_to_hub(gamer_checkpoint, "org/gamer-tiny")
