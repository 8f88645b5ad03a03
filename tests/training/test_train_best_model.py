"""The end-of-run reload of the best checkpoint is vetted like a resume, and our saves show no per-file bar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import logging as hf_logging

from gamer_hf.checkpoint import hidden_weight_bars
from gamer_hf.training import CheckpointError, train


@pytest.fixture
def bars_on() -> Iterator[None]:
    """Transformers' progress bars on for the test (other tests may have turned them off), restored after."""
    before = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    yield
    if not before:
        hf_logging.disable_progress_bar()


class FlipWeightsOnSave(TrainerCallback):
    """Damage every checkpoint's weights right after it is saved and its sha256 recorded (a disk fault
    during the run): a readable file of the right shapes, so only the digest can tell."""

    def on_save(self, args, state, control, **kwargs):
        weights = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0x10
        weights.write_bytes(bytes(data))
        return control


def test_a_best_checkpoint_damaged_during_the_run_is_refused_not_published(make_args, tmp_path, capfd, bars_on):
    args = make_args(max_steps=2, eval_steps=2, disable_tqdm=False)
    with pytest.raises(CheckpointError, match=r"checkpoint-2/model\.safetensors is corrupt: its sha256"):
        train(args, callbacks=[FlipWeightsOnSave()])
    assert not (tmp_path / "model" / "model.safetensors").exists()  # nothing published
    stderr = capfd.readouterr().err
    assert "it/s" in stderr or "s/it" in stderr  # the training bar itself is shown
    assert "Writing model shards" not in stderr  # the checkpoint save's bar is not


def test_hidden_weight_bars_hides_only_the_weight_bars_and_restores_the_hook(capfd, bars_on):
    def bars(*descriptions: str) -> str:
        for desc in descriptions:
            for _ in hf_logging.tqdm(range(2), desc=desc):
                pass
        return capfd.readouterr().err

    assert "Writing model shards" in bars("Writing model shards")  # shown outside our saves
    previous = hf_logging.set_tqdm_hook(None)
    hf_logging.set_tqdm_hook(previous)
    with hidden_weight_bars():
        shown = bars("Writing model shards", "Loading weights", "Fetching files")
    assert "Writing model shards" not in shown and "Loading weights" not in shown
    assert "Fetching files" in shown  # every other bar as before
    assert hf_logging.set_tqdm_hook(previous) is previous  # the hook before the block is back
    assert hf_logging.is_progress_bar_enabled()  # the user's setting untouched
