"""max_eval_samples: a fixed sample of the validation split, the same cases at every evaluation and in
every run, with a default that bounds the cost of large splits."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import TrainerCallback

from gamer_hf.cli import parse_command_args
from gamer_hf.errors import ConfigurationError
from gamer_hf.data.prepare import load_prepared
from gamer_hf.training import TrainArguments, train
from gamer_hf.training.eval_sample import DEFAULT_MAX_EVAL_SAMPLES, evaluation_rows, evaluation_sample


def test_the_sample_is_fixed_ordered_and_of_the_requested_size():
    first, again = evaluation_rows(5000, 300), evaluation_rows(5000, 300)
    assert first.tolist() == again.tolist() and len(set(first.tolist())) == 300
    assert first.tolist() == sorted(first.tolist())  # the split's own order
    assert first.tolist() != list(range(300))  # drawn over the whole split, not its head
    assert first.max() > 4000


@pytest.mark.parametrize("max_samples", [0, -1, 5000, 9000])
def test_zero_or_a_larger_limit_keeps_the_whole_split(max_samples):
    assert evaluation_rows(5000, max_samples).tolist() == list(range(5000))


def test_the_sample_reads_those_rows_of_the_split(prepared_dir):
    validation = load_prepared(prepared_dir).splits["validation"]
    chosen = evaluation_rows(len(validation), 20)
    sample = evaluation_sample(validation, 20)
    assert sample.rows.tolist() == chosen.tolist()
    assert sample.__getitems__(np.arange(20)).to_pylist() == validation.select(chosen.tolist()).to_list()


def test_the_default_applies_from_the_command_line_and_python(prepared_dir, tokenizer_dir):
    argv = ["--data", str(prepared_dir), "--tokenizer", str(tokenizer_dir), "--output_dir", "out"]
    assert parse_command_args(TrainArguments, argv).max_eval_samples == DEFAULT_MAX_EVAL_SAMPLES == 2000
    assert TrainArguments(data="d", tokenizer="t", output_dir="o").max_eval_samples == DEFAULT_MAX_EVAL_SAMPLES
    assert len(evaluation_rows(5000, DEFAULT_MAX_EVAL_SAMPLES)) == 2000
    assert parse_command_args(TrainArguments, [*argv, "--max_eval_samples", "0"]).max_eval_samples == 0
    with pytest.raises(ConfigurationError, match="max_eval_samples must be >= 0"):
        TrainArguments(data="d", tokenizer="t", output_dir="o", max_eval_samples=-5)


class RecordEvaluatedCases(TrainerCallback):
    """The users of the cases each evaluation scored, read from the evaluation dataloader."""

    def __init__(self) -> None:
        self.evaluations: list[list[str]] = []

    def on_evaluate(self, args, state, control, **kwargs):
        cases = kwargs["eval_dataloader"].dataset
        self.evaluations.append(cases.__getitems__(np.arange(len(cases)))["user_id"].to_pylist())


def test_every_evaluation_scores_the_same_sampled_cases(make_args, prepared_dir):
    validation = load_prepared(prepared_dir).splits["validation"]
    assert len(validation) > 20
    recorder = RecordEvaluatedCases()
    result = train(make_args(max_steps=3, eval_steps=1, max_eval_samples=20), callbacks=[recorder])
    expected = validation.select(evaluation_rows(len(validation), 20).tolist())["user_id"]
    assert len(recorder.evaluations) == 3
    assert all(cases == expected for cases in recorder.evaluations)
    assert (result.plan.validation_cases, result.plan.validation_split_cases) == (20, len(validation))
