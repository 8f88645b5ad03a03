"""Finding and vetting checkpoints without training: ordering, resume values, refusal of unsafe weights."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from gamer_hf.training import CHECKPOINTS_SUBDIR, CheckpointError, list_checkpoints, resolve_resume, validate_checkpoint


@pytest.fixture
def checkpoint(trained, tmp_path) -> Path:
    """A private copy of the shared run's newest checkpoint, free to damage."""
    source = list_checkpoints(trained.checkpoint_dir / CHECKPOINTS_SUBDIR)[-1]
    return Path(shutil.copytree(source, tmp_path / source.name))


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    for step in (10, 9, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    assert [path.name for path in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]


@pytest.mark.parametrize(
    ("value", "existing", "expected"),
    [
        (None, [3], None),
        ("auto", [], None),
        ("auto", [3, 12], "checkpoint-12"),
        ("latest", [3, 12], "checkpoint-12"),
        ("TRUE", [5], "checkpoint-5"),
    ],
)
def test_resume_values_pick_the_newest_checkpoint(tmp_path, value, existing, expected):
    for step in existing:
        (tmp_path / f"checkpoint-{step}").mkdir()
    resolved = resolve_resume(value, tmp_path)
    assert (resolved.name if resolved else None) == expected


def test_resume_latest_without_checkpoints_is_an_error_and_paths_pass_through(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint-N folder"):
        resolve_resume("latest", tmp_path)
    assert resolve_resume(str(tmp_path / "checkpoint-3"), tmp_path) == tmp_path / "checkpoint-3"


def test_an_intact_checkpoint_passes_and_reports_its_step(checkpoint):
    assert validate_checkpoint(checkpoint) == int(checkpoint.name.split("-")[1])


def test_pickled_weights_are_never_loaded(checkpoint):
    (checkpoint / "model.safetensors").rename(checkpoint / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        validate_checkpoint(checkpoint)


def test_a_checkpoint_missing_a_tensor_of_the_model_is_refused(checkpoint):
    weights = load_file(checkpoint / "model.safetensors")
    expected = {name: list(tensor.shape) for name, tensor in weights.items()}
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    assert validate_checkpoint(checkpoint) > 0  # a readable file: only the model's tensor list can tell
    with pytest.raises(CheckpointError, match=re.escape(dropped)):
        validate_checkpoint(checkpoint, expected)
    assert validate_checkpoint(checkpoint, expected, optional_keys={dropped}) > 0  # e.g. a tied weight
