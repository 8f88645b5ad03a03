"""`train(args)`: GAMER on the Transformers Trainer, from a prepared dataset to a published model.

The Trainer does the work (AdamW, cosine schedule with warm-up, gradient accumulation, mixed
precision, Accelerate / DeepSpeed / FSDP, progress bars, checkpoint rotation, resuming); this
module wires GAMER's pieces into it and guards the folders around it.

Loss normalisation: `GamerForCausalLM.forward` takes `**kwargs`, so the Trainer counts the scored
code tokens of all micro-batches of an optimizer step (`labels[..., 1:] != -100`, summed over
processes) and passes the count as `num_items_in_batch`; the model divides its summed,
temperature-scaled cross-entropy by it, so every code token weighs the same whatever the
accumulation or the number of processes. The validation loss is the same loss over the held-out
target items' codes only (the collator's evaluation rows).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import PartialState
from accelerate.utils import DistributedType, broadcast_object_list, parse_flag_from_env
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed

from gamer_hf.data.collator import GamerCollator, RowNumbers
from gamer_hf.data.prepare import load_prepared
from gamer_hf.errors import ConfigurationError
from gamer_hf.evaluation import subset_cases

from .arguments import TrainArguments
from .checkpoints import (
    CHECKPOINTS_SUBDIR,
    TRAINER_STATE,
    ChecksumCallback,
    VettedCheckpointTrainer,
    best_checkpoint,
    list_checkpoints,
    resolve_resume,
    stopped_training,
    validate_checkpoint,
)
from .eval_sample import evaluation_sample
from .loss_only import LossOnlyTrainer
from .model_setup import build_model, check_data, load_tokenizer, tokenizer_dir
from .output import check_output_dir, finish_staging, prune_checkpoints, publish, staging_dir
from .plan import StepTimes, TrainingPlan, build_plan, measure_seconds, spread_rows
from .ranking import RANKING_METRIC, RankingSelectionCallback
from .run_info import last_eval_loss, training_info
from .sharding import ProcessShardTrainer, training_rows

__all__ = ["TrainResult", "cpu_processes_launched", "train", "training_arguments"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced. `best_metric` is the published model's selection metric: its
    validation loss, or its validation NDCG@10 with `select_by="ndcg"`."""

    checkpoint_dir: Path  # the final model folder (= output_dir)
    log_history: list[dict[str, Any]]
    best_metric: float | None
    global_step: int
    final_eval_loss: float | None  # the last evaluation's loss (the model at the last step)
    plan: TrainingPlan  # what the run announced before its first step
    kept_checkpoints: list[Path]  # left in <output_dir>/checkpoints: none after a completed run


class GamerTrainer(ProcessShardTrainer, VettedCheckpointTrainer, LossOnlyTrainer):
    """The Trainer `train` runs: each process on its own shard, the best model vetted before it is reloaded, no
    logits materialized."""


def cpu_processes_launched() -> bool:
    """Several processes (torchrun / `accelerate launch`) on a machine without an accelerator.

    Accelerate connects CPU processes only when it starts them through mpirun; started by its
    torchrun launcher they would each train alone unless asked for CPU DDP explicitly.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return world_size > 1 and not has_accelerator


def training_arguments(args: TrainArguments, checkpoints: Path) -> TrainingArguments:
    """The Trainer's settings: ours where GAMER has a protocol, the user's fields otherwise."""
    strategy = "steps" if args.eval_steps is not None else "epoch"
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        optim="adamw_torch",
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # a float below 1 is a fraction of the total steps
        lr_scheduler_type=args.lr_scheduler_type,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps or args.eval_steps,
        save_total_limit=args.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=RANKING_METRIC if args.select_by == "ndcg" else "eval_loss",
        greater_is_better=args.select_by == "ndcg",
        prediction_loss_only=True,  # never gather [batch, length, vocab] logits during evaluation
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives a resume
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        seed=args.seed,
        use_cpu=args.use_cpu or cpu_processes_launched(),
        bf16=args.bf16,
        fp16=args.fp16,
        report_to=args.report_to,
        disable_tqdm=args.disable_tqdm,
        dataloader_num_workers=args.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning helps only host-to-GPU copies
        remove_unused_columns=False,  # the collator reads the prepared columns itself
        ddp_find_unused_parameters=False,  # every parameter takes part in every forward pass
        label_names=["labels"],
    )


def _expected_weights(model: Any) -> tuple[dict[str, list[int]], set[str]]:
    """Tensor shapes a checkpoint of `model` must hold, and the tied names it may omit."""
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) if model.config.tie_word_embeddings else set()
    return shapes, tied


def _publish_best(trainer: Trainer, state: PartialState, out: Path, info: Callable[[], dict[str, Any]]) -> None:
    """Save the best model (loaded by the Trainer at the end) beside `out`, then swap it in."""
    staging = staging_dir(out)
    if state.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # a model folder left by a run killed while publishing
    state.wait_for_everyone()
    trainer.save_model(str(staging))  # every process: DeepSpeed / FSDP gather the weights collectively
    if state.is_main_process:
        finish_staging(staging, info())
        publish(staging, out)
    state.wait_for_everyone()


def _step_times(trainer: Trainer, args: TrainArguments, hf_args: TrainingArguments) -> StepTimes:
    """Measured on a copy of the model with batches of typical rows (spread over each split)."""
    def batch(rows: Any, size: int) -> dict[str, torch.Tensor] | None:
        return trainer.data_collator(rows.__getitems__(spread_rows(len(rows), size))) if len(rows) else None

    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    return measure_seconds(trainer.model, batch(trainer.train_dataset, args.per_device_train_batch_size),
                           batch(trainer.eval_dataset, args.per_device_eval_batch_size), hf_args.device, dtype)


def _announce(trainer: Trainer, args: TrainArguments, hf_args: TrainingArguments, state: PartialState,
              max_history: int | None, splits: datasets.DatasetDict, start_step: int) -> TrainingPlan:
    """Build the plan (timing a warm-up batch on the main process), log it, and print it with the progress bars."""
    times = [_step_times(trainer, args, hf_args) if args.measure_step_time and state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(times, from_process=0)  # every process returns the same plan
    plan = build_plan(
        num_parameters=trainer.model.num_parameters(), preset=None if args.init_from else args.preset_name,
        train_rows=len(splits["train"]), validation_cases=len(trainer.eval_dataset),
        validation_split_cases=len(splits["validation"]), per_device_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, num_processes=state.num_processes,
        num_train_epochs=args.num_train_epochs, max_steps=args.max_steps, eval_steps=args.eval_steps,
        max_history=max_history, start_step=start_step, device=str(hf_args.device), times=times[0],
    )
    if state.is_main_process:
        logger.info("%s", plan.render())
        if not hf_args.disable_tqdm:
            print(plan.render(), file=sys.stderr, flush=True)
    return plan


# What an `accelerate launch` config asks for (the launcher sets these) -> the engine that must then run.
ENGINES = {"ACCELERATE_USE_FSDP": DistributedType.FSDP, "ACCELERATE_USE_DEEPSPEED": DistributedType.DEEPSPEED}


def check_engine(distributed_type: DistributedType) -> None:
    """Refuse a launch whose FSDP / DeepSpeed config accelerate did not apply, before any step.

    Accelerate turns FSDP on only over accelerator devices: on CPU it runs an fsdp.yaml launch as
    plain (unsharded) training without a word, which is not what the config promised.
    """
    for variable, engine in ENGINES.items():
        if parse_flag_from_env(variable) and distributed_type != engine:
            raise ConfigurationError(
                f"accelerate launch asked for {engine.value} ({variable}=true) but accelerate runs this job as "
                f"{distributed_type.value}: it applies {engine.value} only on GPUs (or other accelerators); on CPU "
                "launch with recipes/accelerate/cpu_2proc.yaml instead")


def _completed(trainer: Trainer) -> bool:
    """The run reached its last step, or early stopping ended it (resuming would stop again at once)."""
    stopper = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)), None)
    early = stopper is not None and stopper.early_stopping_patience_counter >= stopper.early_stopping_patience
    return early or trainer.state.global_step >= trainer.state.max_steps


def _tidy_checkpoints(args: TrainArguments, state: PartialState, checkpoints: Path, completed: bool) -> list[Path]:
    """Prune the checkpoints once the model is published (unless kept on request) and say what is left."""
    if state.is_main_process and not args.keep_checkpoints:
        prune_checkpoints(checkpoints, completed=completed)
    state.wait_for_everyone()
    kept = list_checkpoints(checkpoints)
    if kept and state.is_main_process:
        logger.info("checkpoints kept in %s: %s", checkpoints, ", ".join(path.name for path in kept))
    return kept


def train(args: TrainArguments, callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """Train (or fine-tune, or resume) GAMER and publish the best model to `args.output_dir`.

    `callbacks` are extra `TrainerCallback`s. Runs unchanged under `accelerate launch`; every
    process returns the same result, only the main one writes the final folder.
    """
    out = Path(args.output_dir)
    checkpoints = out / CHECKPOINTS_SUBDIR
    resume = resolve_resume(args.resume_from_checkpoint, checkpoints)
    # "auto" over partial checkpoints only starts afresh beside them (kept, rewritten at their step)
    only_partial = resume is None and (args.resume_from_checkpoint or "").lower() == "auto" and bool(
        list_checkpoints(checkpoints))
    clear_old_checkpoints = check_output_dir(out, resuming=resume is not None or only_partial,
                                             overwrite=args.overwrite_output_dir)
    prepared = load_prepared(args.data)
    tokenizer = load_tokenizer(args)
    numbers = RowNumbers.of(tokenizer, prepared.item_ids, prepared.metadata["behaviors"])  # the splits' numbers
    check_data(tokenizer, prepared.metadata, prepared.item_ids, args.data, args.on_unknown, numbers.items)

    hf_args = training_arguments(args, checkpoints)  # also sets up the (distributed) process state
    state = PartialState()
    set_seed(args.seed)
    model = build_model(args, tokenizer, augmented=prepared.metadata.get("augment_copies", 0) > 0)
    finished = False
    start_step = 0
    if resume is not None:
        start_step = validate_checkpoint(resume, *_expected_weights(model))
        logger.info("resuming from %s (step %d)", resume, start_step)
        finished = stopped_training(resume)
    if finished:  # killed after its last checkpoint: publish that run's best model, train no further
        best = best_checkpoint(resume)
        validate_checkpoint(best, *_expected_weights(model))
        model = type(model).from_pretrained(best, use_safetensors=True)

    max_history = args.max_history if args.max_history is not None else prepared.metadata.get("max_history")
    model.config.max_history = max_history  # recommend() cuts histories to the trained length by default
    extra_callbacks = [ChecksumCallback(), *callbacks]
    if args.early_stopping_patience:
        extra_callbacks.insert(1, EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    if args.select_by == "ndcg":  # before early stopping, which reads the metric it adds
        extra_callbacks.insert(1, RankingSelectionCallback(
            subset_cases(prepared.splits["validation"], args.ranking_cases,
                         args.seed if args.ranking_seed is None else args.ranking_seed), prepared.metadata["behaviors"],
            num_beams=args.ranking_beams, max_history=max_history, batch_size=args.per_device_eval_batch_size,
            exclude_history=args.ranking_exclude_history))
    trainer = GamerTrainer(
        model=model,
        args=hf_args,
        train_dataset=training_rows(prepared.splits["train"], state.process_index, state.num_processes,
                                    args.shuffle_block_rows, args.shuffle_buffer_blocks),
        eval_dataset=evaluation_sample(prepared.splits["validation"], args.max_eval_samples),
        data_collator=GamerCollator(tokenizer, max_history=max_history, on_unknown=args.on_unknown,
                                    pack=args.pack_sequences, numbers=numbers, score_repeats=args.score_repeats),
        processing_class=tokenizer,
        callbacks=extra_callbacks,
    )
    check_engine(trainer.accelerator.distributed_type)
    if clear_old_checkpoints and state.is_main_process:  # only once nothing can refuse the run any more
        shutil.rmtree(checkpoints)
    state.wait_for_everyone()
    plan = _announce(trainer, args, hf_args, state, max_history, prepared.splits, start_step)
    if finished:
        trainer.state = TrainerState.load_from_json(str(resume / TRAINER_STATE))
    else:
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    _publish_best(trainer, state, out, info=lambda: training_info(
        args, prepared.metadata, tokenizer_dir(args), tokenizer, trainer.model, trainer.state, state.num_processes))
    kept = _tidy_checkpoints(args, state, checkpoints, completed=finished or _completed(trainer))
    history = trainer.state.log_history
    return TrainResult(
        checkpoint_dir=out,
        log_history=history,
        best_metric=trainer.state.best_metric,
        global_step=trainer.state.global_step,
        final_eval_loss=last_eval_loss(history),
        plan=plan,
        kept_checkpoints=kept,
    )
