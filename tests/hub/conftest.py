"""Fixtures that start the local Hub-API server: `hub_server` for subprocess clients, `hub_in_process`
for clients in the test process itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# ----- GAMER checkpoints and a session-wide server with pushed repos (test_push.py, test_model_card.py) -----

GAMER_REPO = "org/gamer-tiny"  # pushed with gamer_hf.hub.push_to_hub
GAMER_CLI_REPO = "org/gamer-tiny-cli"  # pushed with the `gamer-hf push` console script
BRANCH = "dev"
# Client processes of these tests run one intra-op thread: on a few shared cores, two threads per
# process spin against each other (about 1.7x the CPU time for the same results).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}

PUSH_WITH_API = """
import dataclasses, json, sys
from gamer_hf.hub import push_to_hub
folder, variant, repo_id, branch = sys.argv[1:5]
results = [push_to_hub(folder, repo_id), push_to_hub(folder, repo_id), push_to_hub(variant, repo_id, revision=branch)]
print(json.dumps([dataclasses.asdict(result) for result in results]))
"""


@dataclass
class Published:
    server: HubServer
    checkpoint: Path
    variant: Path  # the checkpoint without its evaluation files, pushed to BRANCH
    api_results: list[dict[str, Any]]  # PushResult dicts: first push, identical second push, branch push
    cli_stdout: str


def copy_checkpoint(folder: Path, target: Path) -> Path:
    """A copy of a checkpoint's model files (its Trainer checkpoints/ are not needed to publish it)."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("checkpoints"))
    return target


@pytest.fixture(scope="session")
def gamer_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GAMER trained for one epoch and evaluated, by the real `train` and `evaluate` code paths:
    the folder holds gamer_training.json and eval_results.json as a user's would."""
    from gamer_hf.cli.evaluate import EvaluateArguments, evaluate_checkpoint
    from gamer_hf.data.prepare import load_prepared, prepare
    from gamer_hf.data.synthetic import SYNTHETIC_BEHAVIORS, generate_synthetic
    from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
    from gamer_hf.training import TrainArguments, train

    root = tmp_path_factory.mktemp("gamer_checkpoint")
    events, _ = generate_synthetic(num_users=48, num_items=40, seed=0)
    prepare(events, behaviors=SYNTHETIC_BEHAVIORS, out=root / "prepared", max_history=6, progress=False)
    prepared = load_prepared(root / "prepared")
    semantic_ids = build_semantic_ids(prepared.item_ids, method="cid", codebook_size=8, seed=0)
    save_semantic_ids(semantic_ids, root / "tokenizer", behaviors=prepared.metadata["behaviors"])
    result = train(TrainArguments(
        data=str(root / "prepared"), tokenizer=str(root / "tokenizer"), output_dir=str(root / "model"),
        preset="tiny", num_train_epochs=1, per_device_train_batch_size=32, per_device_eval_batch_size=128,
        learning_rate=3e-3, seed=0,
        save_total_limit=1, disable_tqdm=True,
    ))
    evaluate_checkpoint(EvaluateArguments(model=str(result.checkpoint_dir), data=str(root / "prepared"),
                                          num_beams=10, max_cases=24), progress=False)
    return result.checkpoint_dir


@pytest.fixture(scope="session")
def published(gamer_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """One server for the session: GAMER_REPO pushed twice plus a branch push (API, one fresh client
    process) and GAMER_CLI_REPO pushed by the `gamer-hf push` console script (another one)."""
    base = tmp_path_factory.mktemp("hub_published")
    variant = copy_checkpoint(gamer_checkpoint, base / "variant")
    for name in ("eval_results.json", "eval_results.md", "eval_ndcg10.png"):
        (variant / name).unlink()
    with HubServer(base / "repos", base / "hf_home") as server:
        console_script = Path(sys.executable).with_name("gamer-hf")
        cli = subprocess.Popen(  # runs while the API client below pushes to another repo
            [str(console_script), "push", "--model", str(gamer_checkpoint), "--repo_id", GAMER_CLI_REPO],
            env=server.env(**ONE_THREAD), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        stdout = server.run_client(PUSH_WITH_API, str(gamer_checkpoint), str(variant), GAMER_REPO, BRANCH,
                                   **ONE_THREAD)
        cli_out, cli_err = cli.communicate(timeout=180)
        assert cli.returncode == 0, cli_err[-6000:]
        yield Published(server, gamer_checkpoint, variant, json.loads(stdout.strip().splitlines()[-1]), cli_out)
    assert not server.errors, "the Hub test server crashed:\n" + "\n".join(server.errors)
