"""The output folder guard and the final swap, without training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gamer_hf.training import output
from gamer_hf.training.output import check_output_dir, prune_checkpoints, publish, staging_dir


@pytest.fixture
def finished(tmp_path) -> Path:
    """An output folder with an old model and one checkpoint, plus a staged new model beside it."""
    out = tmp_path / "model"
    (out / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (out / "config.json").write_text("old")
    (out / "stale_shard.safetensors").write_text("old")
    staging = staging_dir(out)
    staging.mkdir()
    (staging / "config.json").write_text("new")
    return out


def test_publish_swaps_the_model_and_keeps_the_checkpoints(finished):
    publish(staging_dir(finished), finished)
    assert (finished / "config.json").read_text() == "new"
    assert not (finished / "stale_shard.safetensors").exists()  # nothing of the old model survives
    assert (finished / "checkpoints" / "checkpoint-1").is_dir()
    assert [p.name for p in finished.parent.iterdir()] == ["model"]


def test_a_failed_publish_leaves_the_old_model_and_its_checkpoints(finished, monkeypatch):
    staging, rename = staging_dir(finished), os.replace

    def failing(source, target):
        if Path(source) == staging:
            raise OSError("disk full")
        rename(source, target)

    monkeypatch.setattr(output.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        publish(staging, finished)
    assert (finished / "config.json").read_text() == "old"
    assert (finished / "checkpoints" / "checkpoint-1").is_dir()


def test_the_working_directory_is_never_an_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for candidate in (Path("."), tmp_path.parent):
        with pytest.raises(ValueError, match="working directory"):
            check_output_dir(candidate, resuming=False, overwrite=True)


def test_checkpoints_stranded_by_an_interrupted_publish_are_reported(tmp_path):
    out = tmp_path / "model"
    (staging_dir(out) / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="interrupted"):
        check_output_dir(out, resuming=True, overwrite=True)


@pytest.mark.parametrize(("resuming", "overwrite", "clears"), [(False, True, True), (True, True, False)])
def test_overwrite_clears_old_checkpoints_only_for_a_fresh_start(finished, resuming, overwrite, clears):
    assert check_output_dir(finished, resuming=resuming, overwrite=overwrite) is clears


def _checkpoints(root: Path, steps: list[int], best: int | None) -> None:
    for step in steps:
        folder = root / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        state = {"global_step": step, "best_model_checkpoint": None if best is None else str(root / f"checkpoint-{best}")}
        (folder / "trainer_state.json").write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("steps", "best", "kept"),
    [([2, 4, 6], 2, ["checkpoint-2", "checkpoint-6"]),  # the best is loaded at the end of a resumed run
     ([2, 4, 6], 6, ["checkpoint-6"]),
     ([2, 4, 6], None, ["checkpoint-6"])],
)
def test_a_stopped_run_keeps_what_resuming_needs(tmp_path, steps, best, kept):
    root = tmp_path / "checkpoints"
    _checkpoints(root, steps, best)
    prune_checkpoints(root, completed=False)
    assert sorted(path.name for path in root.iterdir()) == kept  # nothing else left, no hidden trash


def test_a_completed_run_keeps_no_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    _checkpoints(root, [2, 4], 2)
    (root / "notes.txt").write_text("the user's")
    prune_checkpoints(root, completed=True)
    assert [path.name for path in root.iterdir()] == ["notes.txt"]  # only checkpoint-N folders are deleted
    (root / "notes.txt").unlink()
    _checkpoints(root, [8], 8)
    prune_checkpoints(root, completed=True)
    assert not root.exists()
    prune_checkpoints(root, completed=True)  # nothing to prune is fine
