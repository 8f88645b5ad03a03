"""GAMER checkpoints: what a folder must hold, the weights digest, and the one loader every entry point uses.

`recommend`, `evaluate`, `train --init_from`, `push`, the pipeline helpers and the server all load
through `load_checkpoint`, so a check done here is done everywhere. A loader that accepts a folder
whose weights do not fit its config fills the gaps with random tensors and answers with confident
garbage, so it refuses: missing, unexpected or mis-shaped tensors, non-finite values, a truncated
file, a tokenizer whose layout is not the model's, and weights whose sha256 differs from the one
recorded when gamer_hf saved them (`gamer_checksums.json`; safetensors itself has no checksum, so a
flipped byte would otherwise load). Folders saved without the digest (older gamer_hf, plain
`save_pretrained`, the Trainer's `checkpoint-N`) still load, with a logged note.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers.utils import logging as hf_logging

from .errors import CheckpointError
from .files import atomic_output, read_json
from .modeling import GamerForCausalLM, GamerTokenizerFast

__all__ = [
    "CHECKSUMS_FILE",
    "EVAL_RESULTS_FILE",
    "EXTRA_FILES",
    "REQUIRED_FILES",
    "TRAINING_INFO_FILE",
    "WEIGHTS_FILE",
    "check_checkpoint_dir",
    "check_finite",
    "check_layout",
    "default_device",
    "hidden_weight_bars",
    "load_checkpoint",
    "load_tokenizer",
    "record_checksums",
    "sha256_of",
    "verify_checksums",
]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
# file -> what it is, for error messages
REQUIRED_FILES: dict[str, str] = {
    "config.json": "model configuration",
    WEIGHTS_FILE: "weights",
    "tokenizer_config.json": "tokenizer configuration",
    "item_index.safetensors": "item index (item id -> semantic ID)",
}
LEGACY_ITEM_INDEX_FILE = "item_index.json"  # what checkpoints before the binary index hold instead; still loads
CHECKSUMS_FILE = "gamer_checksums.json"  # {"model.safetensors": {"sha256": ..., "bytes": ...}}
TRAINING_INFO_FILE = "gamer_training.json"  # written by gamer_hf.training
EVAL_RESULTS_FILE = "eval_results.json"  # written by `gamer-hf evaluate`
# Facts published beside the model when the checkpoint folder has them.
EXTRA_FILES = (TRAINING_INFO_FILE, EVAL_RESULTS_FILE, "eval_ndcg10.png")
_JSON_FILES = ("config.json", "tokenizer_config.json", LEGACY_ITEM_INDEX_FILE, CHECKSUMS_FILE, TRAINING_INFO_FILE,
               EVAL_RESULTS_FILE)
_CHUNK = 1 << 20
WEIGHT_BARS = frozenset({"Loading weights", "Writing model shards"})  # Transformers' per-load / per-save bars


@contextmanager
def hidden_weight_bars() -> Iterator[None]:
    """Hide Transformers' "Loading weights" / "Writing model shards" bars inside our own loads and saves: one
    bar per checkpoint is noise in a training log. Every other bar, and the user's progress-bar and logging
    settings, stay as they are (a tqdm hook for the duration, the previous hook restored after)."""

    def hook(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("desc") in WEIGHT_BARS:
            factory = hf_logging.EmptyTqdm
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_checksums(folder: str | os.PathLike) -> None:
    """Write `gamer_checksums.json` for the weights in `folder`; call it right after saving them."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    record = {WEIGHTS_FILE: {"sha256": sha256_of(weights), "bytes": weights.stat().st_size}}
    with atomic_output(folder / CHECKSUMS_FILE) as temporary:
        temporary.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def verify_checksums(folder: str | os.PathLike) -> None:
    """Raise CheckpointError when the weights in `folder` differ from the sha256 `record_checksums` wrote
    (a warning, no check, when none was recorded)."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    recorded = read_json(folder / CHECKSUMS_FILE, None)
    if recorded is None:
        logger.warning("%s has no %s (saved by an older gamer_hf or another tool): its weights load without a "
                       "corruption check", folder, CHECKSUMS_FILE)
        return
    expected = recorded.get(WEIGHTS_FILE, {}).get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(expected, str):
        raise CheckpointError(f"{folder / CHECKSUMS_FILE} is corrupt: it records no sha256 for {WEIGHTS_FILE}; "
                              "restore it or the whole checkpoint")
    actual = sha256_of(weights)
    if actual != expected:
        raise CheckpointError(f"{weights} is corrupt: its sha256 {actual[:12]}... differs from the "
                              f"{expected[:12]}... recorded in {CHECKSUMS_FILE} when it was saved; restore the "
                              "checkpoint from a good copy (the run's checkpoints/ or the Hub)")


def check_checkpoint_dir(folder: str | os.PathLike, verify_weights: bool = True) -> None:
    """Raise CheckpointError unless `folder` holds every required file, readable and (when recorded) unchanged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder; give the checkpoint folder `gamer-hf train` wrote")
    missing = [f"{name} ({what})" for name, what in REQUIRED_FILES.items() if not (folder / name).is_file()
               and not (name == "item_index.safetensors" and (folder / LEGACY_ITEM_INDEX_FILE).is_file())]
    if missing:
        pickled = " (pytorch_model.bin is not accepted: weights are read from safetensors only)" if (
            folder / "pytorch_model.bin").exists() else ""
        raise CheckpointError(f"{folder} is not a complete GAMER checkpoint: missing {', '.join(missing)}{pickled}")
    for name in _JSON_FILES:
        read_json(folder / name, None)
    model_type = read_json(folder / "config.json").get("model_type")
    if model_type != "gamer":
        raise CheckpointError(f"{folder / 'config.json'} has model_type {model_type!r}, not 'gamer'")
    try:
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{folder / WEIGHTS_FILE} is corrupt or truncated: {error}") from None
    if verify_weights:
        verify_checksums(folder)


def check_layout(model: Any, tokenizer: Any, where: str) -> None:
    """The tokenizer must encode exactly the vocabulary the model was built for."""
    ours = (list(tokenizer.behaviors), list(tokenizer.behaviors.values()), list(tokenizer.codebook_sizes))
    theirs = (model.config.behavior_names, model.config.behavior_levels, model.config.codebook_sizes)
    if ours != theirs:
        raise CheckpointError(
            f"{where}: the tokenizer (behaviors {ours[0]}, levels {ours[1]}, codebooks {ours[2]}) does not match the "
            f"model (behaviors {theirs[0]}, levels {theirs[1]}, codebooks {theirs[2]})"
        )


def _finite(tensor: torch.Tensor) -> bool:
    # A NaN or inf makes the sum non-finite, so one reduction clears almost every tensor; only a
    # non-finite sum (a real NaN, or an overflow of huge finite values) pays for the exact check.
    return bool(torch.isfinite(tensor.sum(dtype=torch.float32))) or bool(torch.isfinite(tensor).all())


def check_finite(model: torch.nn.Module, where: str) -> None:
    """NaN or infinite weights decode to empty or arbitrary lists; refuse them by name."""
    bad = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not _finite(tensor)]
    if bad:
        raise CheckpointError(f"{where} holds non-finite (NaN or inf) values in {len(bad)} tensors (first: {bad[:3]}); "
                              "the run diverged or the file is damaged: use an earlier checkpoint")


def load_tokenizer(folder: str | os.PathLike) -> GamerTokenizerFast:
    """The GAMER tokenizer saved in `folder` (a tokenizer folder or a checkpoint); CheckpointError names a bad file."""
    folder = Path(folder)
    if not (folder / "tokenizer_config.json").is_file():
        raise CheckpointError(f"{folder} is not a GAMER tokenizer folder (no tokenizer_config.json); write one with "
                              "`gamer-hf semantic-ids`")
    for name in ("tokenizer_config.json", LEGACY_ITEM_INDEX_FILE):
        read_json(folder / name, None)
    try:
        return GamerTokenizerFast.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{folder}: the tokenizer files (tokenizer_config.json, item_index.safetensors) do not load "
                              f"({error}); rebuild them with `gamer-hf semantic-ids` or restore them") from None


def default_device() -> str:
    """Where inference runs unless told otherwise: CUDA when present."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_checkpoint(
    folder: str | os.PathLike, tokenizer: Any = None, device: str | torch.device | None = None
) -> tuple[GamerForCausalLM, Any]:
    """Model (in eval mode, every weight present and finite) and tokenizer of a vetted checkpoint folder.

    `tokenizer` replaces the folder's own (its layout must still match); `device` moves the model.
    """
    folder = Path(folder)
    check_checkpoint_dir(folder)
    weights = folder / WEIGHTS_FILE
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report of missing keys is replaced by the error below
    try:
        with hidden_weight_bars():
            model, info = GamerForCausalLM.from_pretrained(  # mismatches are listed in `info`, then refused
                folder, use_safetensors=True, output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{weights} does not load with {folder / 'config.json'}: "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    problems = {key: sorted(info[key])[:3] + ([f"... {len(info[key])} in all"] if len(info[key]) > 3 else [])
                for key in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(key)}
    if problems:
        raise CheckpointError(f"{weights} does not fit {folder / 'config.json'} ({problems}); the config and the "
                              "weights come from different models: restore the checkpoint's own config.json")
    check_finite(model, str(weights))
    if tokenizer is None:
        tokenizer = load_tokenizer(folder)
    check_layout(model, tokenizer, str(folder))
    model.eval()
    return (model if device is None else model.to(device)), tokenizer
