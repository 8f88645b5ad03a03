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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed

from gamer_hf.data.collator import GamerCollator
from gamer_hf.data.prepare import load_prepared
from gamer_hf.evaluation import subset_cases

from .arguments import TrainArguments
from .checkpoints import (
    CHECKPOINTS_SUBDIR,
    TRAINER_STATE,
    best_checkpoint,
    list_checkpoints,
    resolve_resume,
    stopped_training,
    validate_checkpoint,
)
from .model_setup import build_model, check_data, load_tokenizer, tokenizer_dir
from .output import check_output_dir, finish_staging, publish, staging_dir
from .ranking import RANKING_METRIC, RankingSelectionCallback
from .run_info import last_eval_loss, training_info

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
    check_data(tokenizer, prepared.metadata, prepared.item_ids, args.data, args.on_unknown)

    hf_args = training_arguments(args, checkpoints)  # also sets up the (distributed) process state
    state = PartialState()
    set_seed(args.seed)
    model = build_model(args, tokenizer, augmented=prepared.metadata.get("augment_copies", 0) > 0)
    finished = False
    if resume is not None:
        step = validate_checkpoint(resume, *_expected_weights(model))
        logger.info("resuming from %s (step %d)", resume, step)
        finished = stopped_training(resume)
    if finished:  # killed after its last checkpoint: publish that run's best model, train no further
        model = type(model).from_pretrained(best_checkpoint(resume), use_safetensors=True)
    if clear_old_checkpoints and state.is_main_process:
        shutil.rmtree(checkpoints)
    state.wait_for_everyone()

    max_history = args.max_history if args.max_history is not None else prepared.metadata.get("max_history")
    model.config.max_history = max_history  # recommend() cuts histories to the trained length by default
    extra_callbacks = list(callbacks)
    if args.early_stopping_patience:
        extra_callbacks.insert(0, EarlyStoppingCallback(args.early_stopping_patience, args.early_stopping_threshold))
    if args.select_by == "ndcg":  # before early stopping, which reads the metric it adds
        extra_callbacks.insert(0, RankingSelectionCallback(
            subset_cases(prepared.splits["validation"], args.ranking_cases, args.seed), prepared.metadata["behaviors"],
            num_beams=args.ranking_beams, max_history=max_history, batch_size=args.per_device_eval_batch_size))
    trainer = Trainer(
        model=model,
        args=hf_args,
        train_dataset=prepared.splits["train"],
        eval_dataset=prepared.splits["validation"],
        data_collator=GamerCollator(tokenizer, max_history=max_history, on_unknown=args.on_unknown),
        processing_class=tokenizer,
        callbacks=extra_callbacks,
    )
    if finished:
        trainer.state = TrainerState.load_from_json(str(resume / TRAINER_STATE))
    else:
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    _publish_best(trainer, state, out, info=lambda: training_info(
        args, prepared.metadata, tokenizer_dir(args), tokenizer, trainer.model, trainer.state, state.num_processes))
    history = trainer.state.log_history
    return TrainResult(
        checkpoint_dir=out,
        log_history=history,
        best_metric=trainer.state.best_metric,
        global_step=trainer.state.global_step,
        final_eval_loss=last_eval_loss(history),
    )
