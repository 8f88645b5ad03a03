"""The plan announced before training: the Trainer's own step counts, a measured estimate that leaves
the run untouched, and hints for making a long run shorter."""

from __future__ import annotations

import json
import math

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

from gamer_hf import GamerConfig, GamerForCausalLM, GamerTokenizerFast
from gamer_hf.data.prepare import load_prepared
from gamer_hf.training import TRAINING_INFO_FILE, train
from gamer_hf.training.plan import StepTimes, build_plan, count_evaluations, count_steps, spread_rows


@pytest.fixture(scope="module")
def tiny_model() -> GamerForCausalLM:
    tokenizer = GamerTokenizerFast.from_items({f"i{n}": (n % 4, n // 4) for n in range(16)},
                                              behaviors={"click": 0, "buy": 1}, codebook_size=4)
    return GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer))


@pytest.mark.parametrize(
    ("rows", "batch", "accumulation", "epochs", "max_steps"),
    [(100, 16, 1, 3.0, -1), (100, 16, 3, 2.0, -1), (97, 8, 4, 1.5, -1), (5, 16, 2, 1.0, -1), (100, 16, 1, 3.0, 4),
     (64, 16, 1, 0.5, -1)],
)
def test_step_counts_match_the_trainer(tiny_model, tmp_path, rows, batch, accumulation, epochs, max_steps):
    settings = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch,
                                 gradient_accumulation_steps=accumulation, num_train_epochs=epochs,
                                 max_steps=max_steps, use_cpu=True, report_to="none", remove_unused_columns=False)
    trainer = Trainer(model=tiny_model, args=settings, train_dataset=datasets.Dataset.from_dict({"x": range(rows)}))
    _, per_epoch, *_, total = trainer.set_initial_training_values(settings, trainer.get_train_dataloader())
    assert count_steps(rows, batch, accumulation, 1, epochs, max_steps) == (per_epoch, total)


def test_processes_share_whole_batches():
    # 100 rows in batches of 8 = 13 batches; 4 processes take 4 rounds of one batch each
    assert count_steps(100, 8, 1, 4, 2.0, -1) == (4, 8)
    assert count_steps(100, 8, 3, 4, 1.0, -1) == (2, 2)


def test_the_plan_of_a_run_is_what_the_run_did(trained, prepared_dir):
    plan, info = trained.plan, json.loads((trained.checkpoint_dir / TRAINING_INFO_FILE).read_text())
    splits = load_prepared(prepared_dir).splits
    assert plan.train_rows == len(splits["train"])
    assert plan.steps_per_epoch == math.ceil(len(splits["train"]) / 16)  # the fixture's batch size
    assert plan.total_steps == info["results"]["max_steps"] == trained.global_step
    assert plan.evaluations == sum("eval_loss" in row for row in trained.log_history) == 3
    assert plan.validation_cases == plan.validation_split_cases == len(splits["validation"])
    assert plan.eval_batches == math.ceil(len(splits["validation"]) / 32)
    assert plan.num_parameters == info["model"]["num_parameters"]
    assert (plan.preset, plan.max_history, plan.global_batch_size, plan.device) == ("tiny", 8, 16, "cpu")
    assert plan.threads == torch.get_num_threads()
    assert plan.times.train_batch > 0 and plan.times.eval_batch > 0
    assert plan.estimated_seconds == pytest.approx(
        plan.total_steps * plan.times.train_batch + 3 * plan.eval_batches * plan.times.eval_batch)


def test_the_warm_up_measurement_leaves_the_run_unchanged(make_args, tmp_path):
    """The small preset has dropout, which draws from the RNG the Trainer seeded: the copy's draws must not shift it."""
    schedule = dict(max_steps=4, eval_steps=2, per_device_train_batch_size=8, preset="small")
    timed = train(make_args(output_dir=tmp_path / "timed", **schedule))
    untimed = train(make_args(output_dir=tmp_path / "untimed", measure_step_time=False, **schedule))
    assert timed.plan.times is not None and untimed.plan.times is None
    ours, theirs = load_file(tmp_path / "timed" / "model.safetensors"), load_file(tmp_path / "untimed" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)
    losses = [[row["loss"] for row in run.log_history if "loss" in row] for run in (timed, untimed)]
    assert losses[0] == losses[1]


def _plan(seconds_per_batch: float, **overrides):
    values = dict(num_parameters=1_000_000, preset="small", train_rows=20_000, validation_cases=2000,
                  validation_split_cases=21_000, per_device_batch_size=64, per_device_eval_batch_size=64,
                  gradient_accumulation_steps=1, num_processes=1, num_train_epochs=20.0, max_steps=-1,
                  eval_steps=None, max_history=50, start_step=0, device="cpu",
                  times=StepTimes(train_batch=seconds_per_batch, eval_batch=seconds_per_batch / 3))
    values.update(overrides)
    return build_plan(**values)


def test_a_long_run_says_how_to_make_it_shorter():
    plan = _plan(12.0)  # the 18k-item log of the report: about 12 s a step
    assert plan.total_steps == 20 * 313
    assert plan.estimated_seconds / 3600 > 20
    text = plan.render()
    for hint in ("--max_history 25", "--max_steps 626", "--preset tiny", "--max_eval_samples 1000"):
        assert hint in text
    assert "2,000 of 21,000 (max_eval_samples" in text
    assert "estimate       about 2" in text and " h (12 s per training batch" in text


def test_a_short_run_has_no_hints_and_an_unmeasured_one_says_so():
    assert _plan(0.01).shorter() == []
    assert "to make it shorter" not in _plan(0.01).render()
    unmeasured = _plan(0.01, times=None)
    assert unmeasured.estimated_seconds is None and "not measured" in unmeasured.render()


def test_resuming_counts_only_the_steps_and_evaluations_left():
    fresh, resumed = _plan(1.0, max_steps=100, eval_steps=10), _plan(1.0, max_steps=100, eval_steps=10, start_step=40)
    assert fresh.estimated_seconds - resumed.estimated_seconds == pytest.approx(40 * 1.0 + 4 * 32 * (1.0 / 3))
    assert "resuming at step 40" in resumed.render()


@pytest.mark.parametrize(("total", "per_epoch", "eval_steps", "expected"),
                         [(30, 10, None, 3), (25, 10, None, 3), (25, 10, 5, 5), (26, 10, 5, 6)])
def test_evaluations_are_counted_like_the_trainer_schedules_them(total, per_epoch, eval_steps, expected):
    assert count_evaluations(total, per_epoch, eval_steps) == expected


def test_warm_up_rows_spread_over_the_split():
    assert spread_rows(3, 8) == [0, 1, 2]
    assert spread_rows(101, 5) == [0, 25, 50, 75, 100]
    assert spread_rows(10, 1) == [0]


def test_the_plan_is_printed_with_the_progress_bars(make_args, capsys):
    result = train(make_args(max_steps=2, eval_steps=2, disable_tqdm=False))
    printed = capsys.readouterr().err
    assert printed.index("training plan") < printed.index("it/s")  # before the first step
    assert "2 in total" in printed and "estimate" in printed
    assert f"0/{result.plan.eval_batches} [" in printed  # the validation bar counts the planned batches
