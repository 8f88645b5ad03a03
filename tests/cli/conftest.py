"""A tiny prepared dataset, its tokenizer and a checkpoint trained for two steps by the real `train`,
plus the broken copies of that checkpoint a user meets (wrong config, NaN weights, flipped bytes,
a corrupt item index)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gamer_hf.checkpoint import CHECKSUMS_FILE, WEIGHTS_FILE, record_checksums
from gamer_hf.data.prepare import load_prepared, prepare
from gamer_hf.data.synthetic import SYNTHETIC_BEHAVIORS, generate_synthetic
from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
from gamer_hf.training import TrainArguments, train


@pytest.fixture(scope="session")
def cli_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="session")
def prepared(cli_root: Path) -> Path:
    events, _ = generate_synthetic(num_users=60, num_items=40, seed=0)
    prepare(events, behaviors=SYNTHETIC_BEHAVIORS, out=cli_root / "prepared", max_history=6, progress=False)
    return cli_root / "prepared"


@pytest.fixture(scope="session")
def tokenizer(prepared: Path, cli_root: Path) -> Path:
    data = load_prepared(prepared)
    semantic_ids = build_semantic_ids(data.item_ids, method="cid", codebook_size=8, seed=0)
    save_semantic_ids(semantic_ids, cli_root / "tokenizer", behaviors=data.metadata["behaviors"])
    return cli_root / "tokenizer"


@pytest.fixture(scope="session")
def checkpoint(prepared: Path, tokenizer: Path, cli_root: Path) -> Path:
    result = train(TrainArguments(
        data=str(prepared), tokenizer=str(tokenizer), output_dir=str(cli_root / "model"), preset="tiny",
        max_steps=2, per_device_train_batch_size=16, per_device_eval_batch_size=64, seed=0, disable_tqdm=True,
        save_total_limit=1,
    ))
    return result.checkpoint_dir


def _config(**changes: int) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    return damage


def _nan_weights(folder: Path) -> None:
    tensors = load_file(folder / WEIGHTS_FILE)
    name = sorted(name for name in tensors if name.endswith("weight"))[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, folder / WEIGHTS_FILE, metadata={"format": "pt"})
    record_checksums(folder)  # a run that diverged saves NaNs with a matching digest: the finite check must catch it


def _flipped_byte(folder: Path) -> None:
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-100] ^= 0x01  # inside the last tensor's data: safetensors itself still parses the file
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))


def _corrupt_item_index(folder: Path) -> None:
    data = (folder / "item_index.safetensors").read_bytes()
    (folder / "item_index.safetensors").write_bytes(data[: len(data) // 2])


# corruption -> (how to make it, what the one-line error must say)
BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "more_layers_than_weights": (_config(num_hidden_layers=4), "does not fit .*missing_keys"),  # weights hold 2
    "other_shapes_than_weights": (_config(intermediate_size=96), "does not fit .*mismatched_keys"),  # weights: 128
    "nan_weights": (_nan_weights, "non-finite"),
    "flipped_byte": (_flipped_byte, f"differs from the .* recorded in {CHECKSUMS_FILE}"),
    "corrupt_item_index": (_corrupt_item_index, r"item_index\.safetensors is corrupt"),
}


@pytest.fixture(scope="session")
def broken_checkpoints(checkpoint: Path, cli_root: Path) -> dict[str, Path]:
    """One copy of the trained checkpoint per BROKEN case (its Trainer checkpoints left out)."""
    out = {}
    for name, (damage, _) in BROKEN.items():
        folder = cli_root / "broken" / name
        shutil.copytree(checkpoint, folder, ignore=shutil.ignore_patterns("checkpoints"))
        damage(folder)
        out[name] = folder
    return out
