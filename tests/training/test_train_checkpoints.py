"""Finding and vetting checkpoints without training: ordering, resume values, refusal of unsafe weights."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from gamer_hf.checkpoint import CHECKSUMS_FILE, record_checksums
from gamer_hf.training import CHECKPOINTS_SUBDIR, CheckpointError, list_checkpoints, resolve_resume, validate_checkpoint


@pytest.fixture
def checkpoint(trained, tmp_path) -> Path:
    """A private copy of the shared run's newest checkpoint, free to damage."""
    source = list_checkpoints(trained.checkpoint_dir / CHECKPOINTS_SUBDIR)[-1]
    return Path(shutil.copytree(source, tmp_path / source.name))


@pytest.fixture
def checkpoints(trained, tmp_path) -> list[Path]:
    """Private copies of the shared run's two kept checkpoints (oldest first), free to damage."""
    root = shutil.copytree(trained.checkpoint_dir / CHECKPOINTS_SUBDIR, tmp_path / CHECKPOINTS_SUBDIR)
    return list_checkpoints(root)


def test_auto_without_checkpoints_starts_afresh_and_latest_refuses(tmp_path):
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None
    with pytest.raises(CheckpointError, match="no complete checkpoint-N folder"):
        resolve_resume("latest", tmp_path)
    assert resolve_resume(str(tmp_path / "checkpoint-3"), tmp_path) == tmp_path / "checkpoint-3"


def _no_trainer_state(folder: Path) -> None:  # what a kill while saving leaves: it is written last
    (folder / "trainer_state.json").unlink()


def _truncated_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _flipped_weight_bit(folder: Path) -> None:  # still a readable file of the right shapes: only its sha256 tells
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x10
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize("value", ["auto", "latest", "TRUE"])
@pytest.mark.parametrize(
    ("damaged", "expected"),
    [((), 1), ((1,), 0), ((0, 1), None)],
    ids=["all-complete", "newest-partial", "none-complete"],
)
@pytest.mark.parametrize("damage", [_no_trainer_state, _truncated_weights, _flipped_weight_bit])
def test_resume_takes_the_newest_complete_checkpoint_and_keeps_partial_ones(
    checkpoints, caplog, value, damaged, expected, damage
):
    assert len(checkpoints) == 2
    for index in damaged:
        damage(checkpoints[index])
    before = {path: sorted(p.name for p in path.iterdir()) for path in checkpoints}
    root = checkpoints[0].parent
    with caplog.at_level(logging.WARNING, logger="gamer_hf.training.checkpoints"):
        if expected is None and value != "auto":
            with pytest.raises(CheckpointError, match="none complete"):
                resolve_resume(value, root)
            resolved = None
        else:
            resolved = resolve_resume(value, root)
    assert resolved == (None if expected is None else checkpoints[expected])
    notes = [record.getMessage() for record in caplog.records]
    for index in damaged:
        assert any(f"skipping {checkpoints[index].name}" in note for note in notes)
    assert {path: sorted(p.name for p in path.iterdir()) for path in checkpoints} == before  # nothing deleted


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    for step in (10, 9, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    assert [path.name for path in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]


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
    record_checksums(checkpoint)  # a consistent checkpoint, saved for another model
    assert validate_checkpoint(checkpoint) > 0  # a readable file: only the model's tensor list can tell
    with pytest.raises(CheckpointError, match=re.escape(dropped)):
        validate_checkpoint(checkpoint, expected)
    assert validate_checkpoint(checkpoint, expected, optional_keys={dropped}) > 0  # e.g. a tied weight


def test_every_checkpoint_records_the_sha256_of_its_weights(trained, checkpoint):
    assert all((folder / CHECKSUMS_FILE).is_file() for folder in list_checkpoints(trained.checkpoint_dir / CHECKPOINTS_SUBDIR))
    _flipped_weight_bit(checkpoint)
    with pytest.raises(CheckpointError, match="sha256"):
        validate_checkpoint(checkpoint)
    (checkpoint / CHECKSUMS_FILE).unlink()  # an older checkpoint without a record: no check, as before
    assert validate_checkpoint(checkpoint) > 0
