"""Vet a checkpoint folder before anything of it leaves the machine, and load it with safetensors only.

A push of a partial folder (a run killed while saving, a copy that missed the item index) would
publish a repo that fails for every downstream user, so every file a loadable GAMER repo needs is
checked up front and the error names each missing or corrupt one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..modeling import GamerForCausalLM, GamerTokenizerFast

__all__ = [
    "CheckpointError",
    "EVAL_RESULTS_FILE",
    "EXTRA_FILES",
    "REQUIRED_FILES",
    "TRAINING_INFO_FILE",
    "check_checkpoint_dir",
    "check_layout",
    "load_checkpoint",
    "read_json",
]

# file -> what it is, for error messages
REQUIRED_FILES: dict[str, str] = {
    "config.json": "model configuration",
    "model.safetensors": "weights",
    "tokenizer_config.json": "tokenizer configuration",
    "item_index.json": "item index (item id -> semantic ID)",
}
TRAINING_INFO_FILE = "gamer_training.json"  # written by gamer_hf.training
EVAL_RESULTS_FILE = "eval_results.json"  # written by `gamer-hf evaluate`
# Facts published beside the model when the checkpoint folder has them.
EXTRA_FILES = (TRAINING_INFO_FILE, EVAL_RESULTS_FILE, "eval_ndcg10.png")
_JSON_FILES = ("config.json", "tokenizer_config.json", "item_index.json", TRAINING_INFO_FILE, EVAL_RESULTS_FILE)


class CheckpointError(ValueError):
    """A folder is not a complete, readable GAMER checkpoint; the message names the files."""


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: not valid JSON ({error})") from None


def check_checkpoint_dir(folder: Path) -> None:
    """Raise CheckpointError unless `folder` holds every required file, readable."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    missing = [f"{name} ({what})" for name, what in REQUIRED_FILES.items() if not (folder / name).is_file()]
    if missing:
        pickled = " (pytorch_model.bin is not accepted: weights are read from safetensors only)" if (
            folder / "pytorch_model.bin").exists() else ""
        raise CheckpointError(f"{folder} is not a complete GAMER checkpoint: missing {', '.join(missing)}{pickled}")
    for name in _JSON_FILES:
        if (folder / name).is_file():
            read_json(folder / name)
    model_type = read_json(folder / "config.json").get("model_type")
    if model_type != "gamer":
        raise CheckpointError(f"{folder / 'config.json'} has model_type {model_type!r}, not 'gamer'")
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{folder / 'model.safetensors'} is corrupt or truncated: {error}") from None


def check_layout(model: Any, tokenizer: Any, where: str) -> None:
    """The tokenizer must encode exactly the vocabulary the model was built for."""
    ours = (list(tokenizer.behaviors), list(tokenizer.behaviors.values()), list(tokenizer.codebook_sizes))
    theirs = (model.config.behavior_names, model.config.behavior_levels, model.config.codebook_sizes)
    if ours != theirs:
        raise CheckpointError(
            f"{where}: the tokenizer (behaviors {ours[0]}, levels {ours[1]}, codebooks {ours[2]}) does not match the "
            f"model (behaviors {theirs[0]}, levels {theirs[1]}, codebooks {theirs[2]})"
        )


def load_checkpoint(folder: Path, tokenizer: Any = None) -> tuple[GamerForCausalLM, Any]:
    """Model (every weight present, none left over) and tokenizer of a vetted checkpoint folder."""
    check_checkpoint_dir(folder)
    model, info = GamerForCausalLM.from_pretrained(folder, use_safetensors=True, output_loading_info=True)
    problems = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[key]}
    if problems:
        raise CheckpointError(f"{folder / 'model.safetensors'} does not fit {folder / 'config.json'}: {problems}")
    if tokenizer is None:
        tokenizer = GamerTokenizerFast.from_pretrained(folder)
    check_layout(model, tokenizer, str(folder))
    return model.eval(), tokenizer
