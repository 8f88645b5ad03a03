"""`gamer_training.json`: the facts about a finished run that a model card and a reader need.

Everything here is read from what the run already has (prepared metadata, the tokenizer folder's
semantic-ID report, the Trainer state); nothing is recomputed.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import TrainerState

from gamer_hf import __version__
from gamer_hf.files import read_json
from gamer_hf.modeling import GamerForCausalLM, GamerTokenizerFast

from .arguments import TrainArguments
from .output import TRAINING_INFO_FILE

__all__ = ["FORMAT_VERSION", "SEMANTIC_IDS_REPORT", "last_eval_loss", "training_info"]

FORMAT_VERSION = 1
SEMANTIC_IDS_REPORT = "semantic_ids_report.json"  # written by gamer_hf.semantic_ids next to the tokenizer
DATA_KEYS = ("source", "format", "protocol", "target_behavior", "time_resolution", "sessions", "max_history",
             "augment_copies", "seed", "k_core", "min_user_events", "num_users", "num_items", "num_events",
             "events_per_behavior", "num_sessions", "splits")
MODEL_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "head_dim", "cross_level_layers", "behavior_injection_layers", "use_expert_ffn", "use_augmentation",
              "training_temperature", "vocab_size")


def last_eval_loss(log_history: list[dict[str, Any]]) -> float | None:
    losses = [entry["eval_loss"] for entry in log_history if "eval_loss" in entry]
    return losses[-1] if losses else None


def _semantic_ids(args: TrainArguments, tokenizer_folder: Path, tokenizer: GamerTokenizerFast) -> dict[str, Any]:
    """The tokenizer folder's semantic-ID report, else the one recorded by the run being fine-tuned."""
    facts: dict[str, Any] = {
        "tokenizer": str(tokenizer_folder),
        "num_items": len(tokenizer.item_index),
        "num_levels": tokenizer.num_levels,
        "codebook_sizes": list(tokenizer.codebook_sizes),
        "method": None,
    }
    recorded = read_json(tokenizer_folder / SEMANTIC_IDS_REPORT, None)
    if recorded is None and args.init_from is not None:
        recorded = (read_json(Path(args.init_from) / TRAINING_INFO_FILE, None) or {}).get("semantic_ids")
    if isinstance(recorded, dict):
        facts.update({key: value for key, value in recorded.items() if key not in ("tokenizer", "num_items")})
    return facts


def _behaviors(metadata: dict[str, Any], tokenizer: GamerTokenizerFast) -> list[dict[str, Any]]:
    events = metadata.get("events_per_behavior", {})
    return [
        {"name": name, "identity": identity, "level": level, "events": events.get(name, 0),
         "target": name == tokenizer.target_behavior}
        for identity, (name, level) in enumerate(tokenizer.behaviors.items(), start=1)
    ]


def training_info(
    args: TrainArguments,
    metadata: dict[str, Any],
    tokenizer_folder: Path,
    tokenizer: GamerTokenizerFast,
    model: GamerForCausalLM,
    state: TrainerState,
    world_size: int,
) -> dict[str, Any]:
    """The content of `gamer_training.json` for a run that just ended with `state`."""
    previous = read_json(Path(args.init_from) / TRAINING_INFO_FILE, None) if args.init_from else None
    return {
        "format_version": FORMAT_VERSION,
        "versions": {"gamer_hf": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "data": {"path": str(args.data), **{key: metadata.get(key) for key in DATA_KEYS}},
        "behaviors": _behaviors(metadata, tokenizer),
        "target_behavior": tokenizer.target_behavior,
        "semantic_ids": _semantic_ids(args, tokenizer_folder, tokenizer),
        "model": {
            "preset": None if args.init_from else args.preset_name,
            "ablation": args.ablation,
            "init_from": args.init_from,
            "fine_tuned_from": None if previous is None else {
                "data": previous.get("data", {}).get("path"), "results": previous.get("results")},
            "num_parameters": model.num_parameters(),
            **{key: getattr(model.config, key) for key in MODEL_KEYS},
        },
        "training_arguments": dataclasses.asdict(args),
        "world_size": world_size,
        "global_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size,
        "results": {
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": state.epoch,
            "stopped_early": state.global_step < state.max_steps,
            "best_eval_loss": state.best_metric,
            "best_global_step": state.best_global_step,
            "final_eval_loss": last_eval_loss(state.log_history),
        },
        "log_history": state.log_history,
    }
