"""max_eval_samples: a fixed sample of the validation split, the same cases at every evaluation and in
every run, with a default that bounds the cost of large splits."""

from __future__ import annotations

import datasets
import pytest
from transformers import TrainerCallback

from gamer_hf.cli import parse_command_args
from gamer_hf.errors import ConfigurationError
from gamer_hf.data.prepare import load_prepared
from gamer_hf.training import TrainArguments, train
from gamer_hf.training.eval_sample import DEFAULT_MAX_EVAL_SAMPLES, evaluation_sample


@pytest.fixture(scope="module")
def split() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"case": list(range(5000))})


def test_the_sample_is_fixed_ordered_and_of_the_requested_size(split):
    first, again = evaluation_sample(split, 300), evaluation_sample(split, 300)
    cases = first["case"]
    assert cases == again["case"] and len(set(cases)) == 300
    assert cases == sorted(cases)  # the split's own order
    assert cases != list(range(300))  # drawn over the whole split, not its head
    assert max(cases) > 4000


@pytest.mark.parametrize("max_samples", [0, -1, 5000, 9000])
def test_zero_or_a_larger_limit_keeps_the_whole_split(split, max_samples):
    assert evaluation_sample(split, max_samples) is split


def test_the_default_applies_from_the_command_line_and_python(prepared_dir, tokenizer_dir, split):
    argv = ["--data", str(prepared_dir), "--tokenizer", str(tokenizer_dir), "--output_dir", "out"]
    assert parse_command_args(TrainArguments, argv).max_eval_samples == DEFAULT_MAX_EVAL_SAMPLES == 2000
    assert TrainArguments(data="d", tokenizer="t", output_dir="o").max_eval_samples == DEFAULT_MAX_EVAL_SAMPLES
    assert len(evaluation_sample(split, DEFAULT_MAX_EVAL_SAMPLES)) == 2000
    assert parse_command_args(TrainArguments, [*argv, "--max_eval_samples", "0"]).max_eval_samples == 0
    with pytest.raises(ConfigurationError, match="max_eval_samples must be >= 0"):
        TrainArguments(data="d", tokenizer="t", output_dir="o", max_eval_samples=-5)


class RecordEvaluatedCases(TrainerCallback):
    """The users of the cases each evaluation scored, read from the evaluation dataloader."""

    def __init__(self) -> None:
        self.evaluations: list[list[str]] = []

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluations.append(list(kwargs["eval_dataloader"].dataset["user_id"]))


def test_every_evaluation_scores_the_same_sampled_cases(make_args, prepared_dir):
    validation = load_prepared(prepared_dir).splits["validation"]
    assert len(validation) > 20
    recorder = RecordEvaluatedCases()
    result = train(make_args(max_steps=3, eval_steps=1, max_eval_samples=20), callbacks=[recorder])
    expected = evaluation_sample(validation, 20)["user_id"]
    assert len(recorder.evaluations) == 3
    assert all(cases == expected for cases in recorder.evaluations)
    assert (result.plan.validation_cases, result.plan.validation_split_cases) == (20, len(validation))
