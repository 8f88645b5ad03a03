"""A tiny prepared dataset + chunked-ID tokenizer, built once, and a shared short training run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gamer_hf.data.prepare import load_prepared, prepare
from gamer_hf.data.synthetic import SYNTHETIC_BEHAVIORS, generate_synthetic
from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
from gamer_hf.training import TrainArguments, TrainResult, train

MAX_HISTORY = 8  # short sequences keep every run to seconds on two shared cores


@pytest.fixture(scope="session")
def training_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="session")
def prepared_dir(training_root: Path) -> Path:
    events, _ = generate_synthetic(num_users=120, num_items=120, seed=0)
    out = training_root / "prepared"
    prepare(events, behaviors=SYNTHETIC_BEHAVIORS, out=out, max_history=MAX_HISTORY, progress=False)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(prepared_dir: Path, training_root: Path) -> Path:
    prepared = load_prepared(prepared_dir)
    semantic_ids = build_semantic_ids(prepared.item_ids, method="cid", codebook_size=8, seed=0)
    out = training_root / "tokenizer"
    save_semantic_ids(semantic_ids, out, behaviors=prepared.metadata["behaviors"])
    return out


def base_arguments(prepared_dir: Path, tokenizer_dir: Path, output_dir: Path, **overrides) -> TrainArguments:
    values = dict(
        data=str(prepared_dir),
        tokenizer=str(tokenizer_dir),
        output_dir=str(output_dir),
        preset="tiny",
        num_train_epochs=1,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=3e-3,
        logging_steps=1,
        seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return TrainArguments(**values)


@pytest.fixture
def make_args(prepared_dir: Path, tokenizer_dir: Path, tmp_path: Path) -> Callable[..., TrainArguments]:
    """TrainArguments for the tiny preset on the shared data, writing under this test's tmp_path."""

    def make(**overrides) -> TrainArguments:
        overrides.setdefault("output_dir", tmp_path / "model")
        return base_arguments(prepared_dir, tokenizer_dir, **overrides)

    return make


@pytest.fixture(scope="session")
def trained(prepared_dir: Path, tokenizer_dir: Path, training_root: Path) -> TrainResult:
    """Three epochs of the tiny preset, evaluated and saved every epoch (several tests read it and its
    checkpoints, which a completed run would otherwise delete)."""
    return train(base_arguments(prepared_dir, tokenizer_dir, training_root / "trained", num_train_epochs=3,
                                keep_checkpoints=True))
