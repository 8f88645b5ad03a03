"""The plan of a training run, announced before the first step.

A run on a large catalogue can take hours, and the first sign used to be the progress bar's ETA.
`build_plan` counts what the Trainer will do (rows, steps per epoch and in total, evaluations) with
the Trainer's own arithmetic, and `measure_seconds` times one training batch and one validation
batch on a copy of the model, so that the estimate is measured on this machine and the run itself
is untouched: the copy's weights, its gradients and the RNG draws of its dropout are thrown away.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .sharding import rows_per_process

__all__ = ["StepTimes", "TrainingPlan", "build_plan", "count_evaluations", "count_steps", "measure_seconds",
           "spread_rows"]

# Suggest a shorter run when the estimate passes this; below it the hints are noise.
LONG_RUN_SECONDS = 15 * 60
LONG_HISTORY = 20  # suggest --max_history below the prepared length only above this
SMALLER_PRESET = {"base": "small", "small": "tiny"}


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one training micro-batch (forward, backward, AdamW) and of one validation batch."""

    train_batch: float
    eval_batch: float


@dataclass(frozen=True)
class TrainingPlan:
    """What a run will do, and roughly how long it takes; `render()` is what `train` prints."""

    num_parameters: int
    preset: str | None  # None when fine-tuning (init_from fixes the size)
    train_rows: int
    validation_cases: int  # evaluated at every evaluation (max_eval_samples of the split)
    validation_split_cases: int
    per_device_batch_size: int
    gradient_accumulation_steps: int
    num_processes: int
    max_history: int | None
    steps_per_epoch: int
    total_steps: int
    start_step: int  # > 0 when resuming
    evaluations: int  # at most; early stopping may end the run sooner
    eval_batches: int  # per evaluation and process
    device: str
    threads: int
    times: StepTimes | None  # None when the warm-up measurement was switched off

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.num_processes

    @property
    def epochs(self) -> float:
        return self.total_steps / self.steps_per_epoch

    @property
    def estimated_seconds(self) -> float | None:
        """Training steps left plus every evaluation, from the measured warm-up; early stopping may end
        sooner, and saving checkpoints and the data loader's work come on top."""
        if self.times is None:
            return None
        batches = (self.total_steps - self.start_step) * self.gradient_accumulation_steps
        steps = batches * self.times.train_batch
        done = math.floor(self.evaluations * self.start_step / self.total_steps)
        return steps + (self.evaluations - done) * self.eval_batches * self.times.eval_batch

    def shorter(self) -> list[str]:
        """Ways to make a long run shorter, each with the flag that does it."""
        estimate = self.estimated_seconds
        if estimate is not None and estimate < LONG_RUN_SECONDS:
            return []
        hints = []
        if self.max_history is not None and self.max_history > LONG_HISTORY:
            hints.append(f"--max_history {self.max_history // 2}: shorter prompts (a step's cost grows with "
                         f"the history length, now {self.max_history})")
        hints.append(f"--max_steps {max(1, self.total_steps // 10)}: stop after that many optimizer steps "
                     f"(now {self.total_steps})")
        if self.preset in SMALLER_PRESET:
            hints.append(f"--preset {SMALLER_PRESET[self.preset]}: a smaller model than {self.preset!r}")
        if self.validation_cases > 1000:
            hints.append(f"--max_eval_samples 1000: validate on fewer cases (now {self.validation_cases})")
        return hints

    def render(self) -> str:
        cases = f"{self.validation_cases:,}"
        if self.validation_cases < self.validation_split_cases:
            cases += f" of {self.validation_split_cases:,} (max_eval_samples; the same cases every time)"
        lines = [
            "training plan",
            f"  model          {self.num_parameters:,} parameters"
            + (f" (preset {self.preset})" if self.preset else " (fine-tuning)"),
            f"  data           {self.train_rows:,} training rows, history length {self.max_history or 'full'}",
            f"  batch          {self.global_batch_size:,} rows per step ({self.per_device_batch_size} per device x "
            f"{self.gradient_accumulation_steps} accumulation x {_count(self.num_processes, 'process')})",
            f"  steps          {self.steps_per_epoch:,} per epoch, {self.total_steps:,} in total "
            f"({self.epochs:.3g} epochs)" + (f", resuming at step {self.start_step:,}" if self.start_step else ""),
            f"  validation     {cases} cases, up to {_count(self.evaluations, 'evaluation')} of "
            f"{_count(self.eval_batches, 'batch')}",
            f"  device         {self.device}, {_count(self.threads, 'CPU thread')}",
        ]
        estimate = self.estimated_seconds
        if self.times is None:
            lines.append("  estimate       not measured (measure_step_time=false)")
        else:
            lines.append(f"  estimate       about {_duration(estimate)} ({self.times.train_batch:.3g} s per "
                         f"training batch, {self.times.eval_batch:.3g} s per validation batch, measured just now)")
        hints = self.shorter()
        if hints:
            lines.append("  to make it shorter:")
            lines += [f"    {hint}" for hint in hints]
        return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith(("s", "ch")) else "s")
    return f"{number:,} {noun if number == 1 else plural}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def count_steps(rows: int, per_device_batch_size: int, gradient_accumulation_steps: int, num_processes: int,
                num_train_epochs: float, max_steps: int) -> tuple[int, int]:
    """(optimizer steps per epoch, steps in total), as `Trainer.set_initial_training_values` counts them.

    Each process trains on its own shard of rows // processes rows (`sharding.py`); a partial
    accumulation round still makes a step.
    """
    batches = math.ceil(rows_per_process(rows, num_processes) / per_device_batch_size)
    per_epoch = max(math.ceil(batches / gradient_accumulation_steps), 1)
    total = max_steps if max_steps > 0 else math.ceil(num_train_epochs * per_epoch)
    return per_epoch, total


def count_evaluations(total_steps: int, steps_per_epoch: int, eval_steps: int | None) -> int:
    """Evaluations of a run that is not stopped early: every eval_steps (or epoch), and at the end."""
    return math.ceil(total_steps / (eval_steps or steps_per_epoch))


def build_plan(*, num_parameters: int, preset: str | None, train_rows: int, validation_cases: int,
               validation_split_cases: int, per_device_batch_size: int, per_device_eval_batch_size: int,
               gradient_accumulation_steps: int, num_processes: int, num_train_epochs: float, max_steps: int,
               eval_steps: int | None, max_history: int | None, start_step: int, device: str,
               times: StepTimes | None) -> TrainingPlan:
    """The plan from the run's settings and sizes (no model or data needed besides their counts)."""
    per_epoch, total = count_steps(train_rows, per_device_batch_size, gradient_accumulation_steps, num_processes,
                                   num_train_epochs, max_steps)
    return TrainingPlan(
        num_parameters=num_parameters, preset=preset, train_rows=train_rows, validation_cases=validation_cases,
        validation_split_cases=validation_split_cases, per_device_batch_size=per_device_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps, num_processes=num_processes,
        max_history=max_history, steps_per_epoch=per_epoch, total_steps=total, start_step=start_step,
        evaluations=count_evaluations(total, per_epoch, eval_steps),
        eval_batches=math.ceil(math.ceil(validation_cases / per_device_eval_batch_size) / num_processes),
        device=device, threads=torch.get_num_threads(), times=times,
    )


def _timed(run, repeats: int = 3, quick: float = 0.5) -> float:
    """Seconds of `run()`: the first call warms up; when it was quick, the median of a few more."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    if first >= quick:
        return first
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2]


def measure_seconds(model: torch.nn.Module, train_batch: Mapping[str, torch.Tensor],
                    eval_batch: Mapping[str, torch.Tensor] | None, device: torch.device,
                    autocast_dtype: torch.dtype | None = None) -> StepTimes:
    """Time a training batch and a validation batch (0 s without one) on a copy of `model`; `model` and the
    RNGs are left as they were."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        twin = copy.deepcopy(model).to(device).train()
        optimizer = torch.optim.AdamW(twin.parameters(), lr=0.0)
        train_inputs = {key: value.to(device) for key, value in train_batch.items()}
        eval_inputs = {key: value.to(device) for key, value in (eval_batch or {}).items()}
        autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                    else nullcontext())

        def step() -> None:
            with autocast:
                loss = twin(**train_inputs, skip_logits=True).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _synchronize(device)

        def evaluate() -> None:
            with torch.no_grad(), autocast:
                twin(**eval_inputs, skip_logits=True)
            _synchronize(device)

        train_seconds = _timed(step)
        twin.eval()
        eval_seconds = _timed(evaluate) if eval_inputs else 0.0
        del twin, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the copy's memory goes back before the run allocates its own
    return StepTimes(train_batch=train_seconds, eval_batch=eval_seconds)


def spread_rows(count: int, size: int) -> list[int]:
    """`size` row indices spread evenly over `count` rows: a warm-up batch of typical lengths, without RNG."""
    if count <= size:
        return list(range(count))
    return [round(i * (count - 1) / (size - 1)) if size > 1 else 0 for i in range(size)]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
