"""End-to-end training runs of the tiny preset: the published model, resuming, early stopping, fine-tuning."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from gamer_hf import GamerForCausalLM, GamerTokenizerFast
from gamer_hf.data.collator import GamerCollator
from gamer_hf.data.prepare import load_prepared
from gamer_hf.training import CHECKPOINTS_SUBDIR, TRAINING_INFO_FILE, CheckpointError, list_checkpoints, train
from gamer_hf.errors import ConfigurationError
from gamer_hf.training.checkpoints import stopped_training


def eval_losses(log_history: list[dict]) -> list[float]:
    return [entry["eval_loss"] for entry in log_history if "eval_loss" in entry]


def read_info(folder: Path) -> dict:
    return json.loads((folder / TRAINING_INFO_FILE).read_text())


class Interrupted(Exception):
    """Stands in for a killed process."""


class KillAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise Interrupted(f"killed after saving step {state.global_step}")


def test_published_model_is_the_best_checkpoint_and_loads_with_auto_classes(trained):
    folder = trained.checkpoint_dir
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert isinstance(model, GamerForCausalLM) and isinstance(tokenizer, GamerTokenizerFast)
    best_step = read_info(folder)["results"]["best_global_step"]
    best = load_file(folder / CHECKPOINTS_SUBDIR / f"checkpoint-{best_step}" / "model.safetensors")
    published = load_file(folder / "model.safetensors")
    assert published.keys() == best.keys()
    assert all(torch.equal(published[key], best[key]) for key in best)
    assert not (folder / "training_args.bin").exists()  # no pickle in a shareable model folder
    assert not list(folder.parent.glob(f".{folder.name}.*"))  # no staging or old folder left behind
    history = [("click", item) for item in list(tokenizer.item_index)[:3]]
    recommendations = model.recommend(tokenizer, [history], top_k=3, num_beams=3)
    assert len(recommendations[0]) == 3


def test_validation_loss_decreases_over_epochs(trained):
    losses = eval_losses(trained.log_history)
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2]
    assert trained.best_metric == pytest.approx(min(losses))


def test_training_info_records_the_facts_a_model_card_needs(trained, prepared_dir):
    info = read_info(trained.checkpoint_dir)
    metadata = load_prepared(prepared_dir).metadata
    assert info["data"]["num_users"] == metadata["num_users"]
    assert info["data"]["splits"] == metadata["splits"]
    assert [(b["name"], b["level"], b["events"]) for b in info["behaviors"]] == [
        (name, level, metadata["events_per_behavior"][name]) for name, level in metadata["behaviors"].items()
    ]
    assert info["target_behavior"] == "buy"
    assert info["semantic_ids"]["method"] == "cid"
    assert info["semantic_ids"]["report"]["num_items"] == metadata["num_items"]
    assert info["model"]["preset"] == "tiny" and info["model"]["use_augmentation"] is False
    assert info["training_arguments"]["num_train_epochs"] == 3
    assert info["results"]["global_step"] == trained.global_step
    assert info["results"]["best_eval_loss"] == pytest.approx(trained.best_metric)
    assert info["results"]["final_eval_loss"] == pytest.approx(eval_losses(trained.log_history)[-1])
    assert eval_losses(info["log_history"]) == pytest.approx(eval_losses(trained.log_history))


def test_a_finished_model_is_not_overwritten(trained, make_args):
    with pytest.raises(FileExistsError, match=TRAINING_INFO_FILE):
        train(make_args(output_dir=trained.checkpoint_dir))


def test_a_folder_of_other_files_is_refused(make_args, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match="notes.txt"):
        train(make_args())


def test_overwrite_replaces_the_model_and_its_old_checkpoints(make_args):
    train(make_args(max_steps=2, eval_steps=2, keep_checkpoints=True))
    result = train(make_args(max_steps=1, eval_steps=1, overwrite_output_dir=True, keep_checkpoints=True))
    assert [path.name for path in list_checkpoints(result.checkpoint_dir / CHECKPOINTS_SUBDIR)] == ["checkpoint-1"]
    assert read_info(result.checkpoint_dir)["results"]["global_step"] == 1


class StopAt(TrainerCallback):
    """Ends a run before its last step, as a wall-clock cap or a user's callback would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_a_completed_run_deletes_its_checkpoints(make_args):
    result = train(make_args(max_steps=3, eval_steps=1))
    assert result.kept_checkpoints == [] and not (result.checkpoint_dir / CHECKPOINTS_SUBDIR).exists()
    assert AutoModelForCausalLM.from_pretrained(result.checkpoint_dir).num_parameters() > 0


def test_a_stopped_run_keeps_what_resuming_needs_and_says_where(make_args, tmp_path):
    schedule = dict(max_steps=6, eval_steps=1, save_total_limit=4)
    stopped = train(make_args(**schedule), callbacks=[StopAt(3)])
    best = read_info(stopped.checkpoint_dir)["results"]["best_global_step"]
    assert [path.name for path in stopped.kept_checkpoints] == sorted({f"checkpoint-{best}", "checkpoint-3"},
                                                                      key=lambda name: int(name.split("-")[1]))
    assert list_checkpoints(stopped.checkpoint_dir / CHECKPOINTS_SUBDIR) == stopped.kept_checkpoints
    resumed = train(make_args(resume_from_checkpoint="auto", **schedule))
    assert resumed.global_step == 6 and resumed.kept_checkpoints == []
    assert not (resumed.checkpoint_dir / CHECKPOINTS_SUBDIR).exists()


@pytest.mark.parametrize(
    ("max_steps", "killed_while_saving"),
    [(6, False), (6, True), (4, False)],  # 4 ends inside an epoch: the Trainer itself would take a fifth step
    ids=["killed-after-save", "killed-while-saving", "killed-after-the-last-save"],
)
def test_resumed_run_ends_where_an_uninterrupted_run_ends(make_args, tmp_path, caplog, max_steps,
                                                          killed_while_saving):
    schedule = dict(max_steps=max_steps, eval_steps=2)
    full = train(make_args(output_dir=tmp_path / "full", **schedule))
    killed = tmp_path / "killed"
    with pytest.raises(Interrupted):
        train(make_args(output_dir=killed, **schedule), callbacks=[KillAfterSave(4)])
    assert not (killed / TRAINING_INFO_FILE).exists()
    with pytest.raises(FileExistsError, match="checkpoint-4"):  # a fresh start would clobber the run
        train(make_args(output_dir=killed, **schedule))
    partial = killed / CHECKPOINTS_SUBDIR / "checkpoint-4"
    if killed_while_saving:  # the Trainer writes trainer_state.json last
        (partial / "trainer_state.json").unlink()

    with caplog.at_level(logging.WARNING, logger="gamer_hf.training.checkpoints"):  # other tests quiet gamer_hf
        resumed = train(make_args(output_dir=killed, resume_from_checkpoint="auto", **schedule))
    assert resumed.global_step == full.global_step == max_steps
    assert [entry["step"] for entry in resumed.log_history if "loss" in entry] == list(range(1, max_steps + 1))
    assert read_info(killed)["results"]["global_step"] == max_steps
    assert eval_losses(resumed.log_history) == pytest.approx(eval_losses(full.log_history))
    ours, reference = load_file(killed / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    assert all(torch.allclose(ours[key], reference[key], atol=1e-6) for key in reference)
    assert AutoModelForCausalLM.from_pretrained(killed).num_parameters() > 0
    skipped = [record.getMessage() for record in caplog.records if "skipping checkpoint-4" in record.getMessage()]
    assert len(skipped) == killed_while_saving and all("trainer_state.json" in note for note in skipped)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("model.safetensors", _truncate),
        ("optimizer.pt", _truncate),
        ("trainer_state.json", Path.unlink),
        ("scheduler.pt", Path.unlink),
        ("trainer_state.json", lambda path: path.write_text('{"global_step": ')),
    ],
    ids=["truncated-weights", "truncated-optimizer", "no-trainer-state", "no-scheduler", "broken-trainer-state"],
)
def test_a_partial_or_corrupt_checkpoint_is_refused(trained, make_args, tmp_path, name, damage):
    source = list_checkpoints(trained.checkpoint_dir / CHECKPOINTS_SUBDIR)[-1]
    copy = tmp_path / "model" / CHECKPOINTS_SUBDIR / source.name
    shutil.copytree(source, copy)
    damage(copy / name)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        train(make_args(resume_from_checkpoint=str(copy)))
    with pytest.raises(CheckpointError, match="none complete"):  # "latest" never starts over
        train(make_args(resume_from_checkpoint="latest"))


def test_a_checkpoint_of_another_architecture_is_refused(trained, make_args):
    source = list_checkpoints(trained.checkpoint_dir / CHECKPOINTS_SUBDIR)[-1]
    with pytest.raises(CheckpointError, match="model.safetensors"):
        train(make_args(preset="small", resume_from_checkpoint=str(source)))


def test_early_stopping_ends_a_run_whose_validation_loss_stops_improving(make_args, tmp_path):
    epochs, patience = 6, 2
    settings = dict(num_train_epochs=epochs, learning_rate=0.0, warmup_ratio=0.0, early_stopping_patience=patience)
    result = train(make_args(keep_checkpoints=True, **settings))
    info = read_info(result.checkpoint_dir)
    assert info["results"]["stopped_early"]
    assert len(eval_losses(result.log_history)) <= patience + 1 < epochs
    assert result.global_step < info["results"]["max_steps"]
    newest = result.kept_checkpoints[-1]
    assert stopped_training(newest)  # early stopping, not max_steps, completed this run

    # Killed after that last save, before publishing: resuming publishes its best model and trains no further.
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.move(result.checkpoint_dir / CHECKPOINTS_SUBDIR, killed / CHECKPOINTS_SUBDIR)
    resumed = train(make_args(output_dir=killed, resume_from_checkpoint="auto", **settings))
    assert resumed.global_step == result.global_step
    assert eval_losses(resumed.log_history) == eval_losses(result.log_history)
    assert load_file(killed / "model.safetensors").keys() == load_file(result.checkpoint_dir / "model.safetensors").keys()
    assert resumed.kept_checkpoints == [] and not (killed / CHECKPOINTS_SUBDIR).exists()


def test_fine_tuning_starts_from_the_checkpoint_and_its_tokenizer(trained, make_args, tmp_path):
    result = train(make_args(tokenizer=None, preset=None, init_from=str(trained.checkpoint_dir), max_steps=3,
                             output_dir=tmp_path / "fine-tuned"))
    info = read_info(result.checkpoint_dir)
    assert info["model"]["init_from"] == str(trained.checkpoint_dir)
    assert info["model"]["fine_tuned_from"]["results"]["global_step"] == trained.global_step
    assert info["semantic_ids"]["method"] == "cid"  # carried over from the checkpoint's training facts
    first_loss = [entry["loss"] for entry in result.log_history if "loss" in entry][0]
    fresh_first_loss = [entry["loss"] for entry in trained.log_history if "loss" in entry][0]
    assert first_loss < fresh_first_loss
    assert GamerTokenizerFast.from_pretrained(result.checkpoint_dir).item_index == \
        GamerTokenizerFast.from_pretrained(trained.checkpoint_dir).item_index


def test_gradient_accumulation_weighs_every_code_token_equally(make_args, tmp_path, monkeypatch):
    """One step over 8 sequences == two accumulated micro-batches of 4 with different token counts."""
    scored: list[int] = []
    collate = GamerCollator.__call__

    def counting(self, rows):
        batch = collate(self, rows)
        scored.append(int((batch["labels"][:, 1:] != -100).sum()))
        return batch

    monkeypatch.setattr(GamerCollator, "__call__", counting)
    settings = dict(max_steps=1, early_stopping_patience=0)
    whole = train(make_args(output_dir=tmp_path / "whole", per_device_train_batch_size=8, **settings))
    scored.clear()
    split = train(make_args(output_dir=tmp_path / "split", per_device_train_batch_size=4,
                            gradient_accumulation_steps=2, **settings))
    assert scored[0] != scored[1]  # a mean of micro-batch means would differ from the token mean
    first = [entry for entry in whole.log_history if "loss" in entry][0]
    second = [entry for entry in split.log_history if "loss" in entry][0]
    assert second["loss"] == pytest.approx(first["loss"], rel=1e-5)
    assert second["grad_norm"] == pytest.approx(first["grad_norm"], rel=1e-4)


def test_an_fsdp_launch_on_cpu_is_refused_before_anything_is_replaced(make_args, monkeypatch):
    first = train(make_args(max_steps=1, eval_steps=1, keep_checkpoints=True))
    kept = sorted(path.name for path in first.kept_checkpoints)
    # What `accelerate launch --config_file recipes/accelerate/fsdp.yaml` sets; accelerate ignores it on CPU.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigurationError, match="ACCELERATE_USE_FSDP=true.*only on GPUs"):
        train(make_args(max_steps=1, overwrite_output_dir=True))
    assert sorted(path.name for path in list_checkpoints(first.checkpoint_dir / CHECKPOINTS_SUBDIR)) == kept
    assert read_info(first.checkpoint_dir)["results"]["global_step"] == 1  # the finished model is untouched
