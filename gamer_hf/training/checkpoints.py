"""Find and vet Trainer checkpoints before resuming from them.

The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG state, and
`trainer_state.json` last), so a run killed while saving leaves a partial folder, and it loads
weights with `strict=False`. Resuming from such a folder would silently mix fresh and restored
state; `validate_checkpoint` refuses it up front and names the broken file.

Trust: weights are read only from safetensors, but resuming also reads `optimizer.pt`,
`scheduler.pt` and `rng_state*.pth` with `torch.load(weights_only=True)` (the Trainer's own code).
That restricted unpickler is the best Transformers allows; resume only from checkpoint folders
your own runs wrote.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..checkpoint import hidden_weight_bars, record_checksums, verify_checksums
from ..errors import CheckpointError
from ..files import read_json
from .arguments import RESUME_LATEST

__all__ = [
    "CHECKPOINTS_SUBDIR",
    "CheckpointError",
    "ChecksumCallback",
    "VettedCheckpointTrainer",
    "best_checkpoint",
    "list_checkpoints",
    "resolve_resume",
    "stopped_training",
    "validate_checkpoint",
]

CHECKPOINTS_SUBDIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
CONFIG = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")  # plain / FSDP full-state checkpoints
SCHEDULER_FILE = "scheduler.pt"
TORCH_SUFFIXES = {".pt", ".pth", ".bin"}  # torch.save files: zip archives
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")

logger = logging.getLogger(__name__)


def list_checkpoints(root: str | Path) -> list[Path]:
    """`checkpoint-N` folders under `root`, oldest (smallest N) first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_NAME.match(p.name))]
    return [path for _, path in sorted(found)]


def resolve_resume(value: str | None, root: str | Path) -> Path | None:
    """Turn a `resume_from_checkpoint` value into a checkpoint folder (or None for a fresh start).

    "auto" / "latest" / "true" take the newest complete checkpoint: newer ones that a kill left
    partial (or that are corrupt) are skipped with a warning naming what is wrong, and left in
    place (the resumed run rewrites them when it reaches their step). "auto" starts afresh when
    no complete checkpoint exists; "latest" then refuses. A path is returned as given (the caller
    validates it and refuses a partial one).
    """
    if value is None:
        return None
    if value.lower() not in RESUME_LATEST:
        return Path(value)
    found = list_checkpoints(root)
    for folder in reversed(found):
        try:
            validate_checkpoint(folder)
        except CheckpointError as error:
            logger.warning("resume_from_checkpoint=%s: skipping %s, kept as it is: %s", value, folder.name, error)
            continue
        return folder
    if value.lower() == "auto":
        if found:
            logger.warning("resume_from_checkpoint=auto: no complete checkpoint under %s; starting from step 0", root)
        return None
    skipped = f" ({len(found)} found, none complete; see the warnings above)" if found else ""
    raise CheckpointError(f"resume_from_checkpoint={value!r}: no complete checkpoint-N folder under {root}{skipped}")


def stopped_training(folder: str | Path) -> bool:
    """Whether the run had completed (max_steps reached, or early stopping) when it saved `folder`.

    A kill after the last checkpoint leaves such a folder. The Trainer resuming it trains further
    (one more step when max_steps ends inside an epoch; on to the next evaluation after early
    stopping), so the caller publishes the run's best model instead. A run stopped by some other
    callback (a wall-clock cap) has not completed: resuming it goes on training.
    """
    state = _read_json(Path(folder) / TRAINER_STATE)
    callbacks = state.get("stateful_callbacks", {}) if isinstance(state, dict) else {}
    if not callbacks.get("TrainerControl", {}).get("args", {}).get("should_training_stop"):
        return False
    if state.get("max_steps", 0) > 0 and state.get("global_step", 0) >= state["max_steps"]:
        return True
    stopper = callbacks.get("EarlyStoppingCallback", {})
    stoppers = stopper if isinstance(stopper, list) else [stopper]
    return any(entry.get("attributes", {}).get("early_stopping_patience_counter", 0)
               >= entry.get("args", {}).get("early_stopping_patience", float("inf")) for entry in stoppers)


def best_checkpoint(folder: str | Path) -> Path:
    """The best checkpoint that `folder`'s trainer state records, looked up beside `folder`.

    Falls back to `folder` itself when none is recorded or it is gone, as the Trainer does.
    """
    folder = Path(folder)
    recorded = _read_json(folder / TRAINER_STATE).get("best_model_checkpoint")
    candidate = folder.parent / Path(recorded).name if recorded else folder
    return candidate if candidate.is_dir() else folder


class ChecksumCallback(TrainerCallback):
    """Record the sha256 of every `checkpoint-N` folder's weights once the Trainer has saved it, so that
    resuming (`validate_checkpoint`) notices weights changed on disk since; the published model gets its
    own in `output.finish_staging`. Sharded and engine-state weights go unrecorded."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and (folder / SAFE_WEIGHTS).is_file():
            record_checksums(folder)
        return control


class VettedCheckpointTrainer(Trainer):
    """A Trainer whose end-of-run reload of the best checkpoint gets the checks a resume gets
    (`validate_checkpoint`: complete, readable, weights unchanged since `ChecksumCallback` recorded their
    sha256), so a checkpoint corrupted on disk during the run is refused instead of published; and whose
    saves show no per-file "Writing model shards" bar."""

    def _load_best_model(self) -> None:
        validate_checkpoint(self.state.best_model_checkpoint)
        super()._load_best_model()

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        with hidden_weight_bars():
            super()._save(output_dir, state_dict)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.parent} is incomplete: {path.name} is missing "
                              "(was the run killed while saving?)")
    return read_json(path)


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.parent} is incomplete: {path.name} is missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except SafetensorError as error:
        raise CheckpointError(f"checkpoint file {path} is corrupt or truncated: {error}") from None


def _engine_state(folder: Path) -> bool:
    """DeepSpeed (global_stepN/) or sharded-FSDP (pytorch_model_fsdp_0/, optimizer_0/) state folders."""
    return any(p.is_dir() and p.name.startswith(("global_step", "pytorch_model_fsdp", "optimizer"))
               for p in folder.iterdir())


def _weight_shapes(folder: Path, engine_state: bool) -> dict[str, list[int]] | None:
    """Tensor name -> shape over all safetensors weight files; None when only engine state holds them."""
    if (folder / SAFE_WEIGHTS_INDEX).is_file():
        index = _read_json(folder / SAFE_WEIGHTS_INDEX)
        shards = sorted(set(index.get("weight_map", {}).values())) if isinstance(index, dict) else []
        if not shards:
            raise CheckpointError(f"checkpoint file {folder / SAFE_WEIGHTS_INDEX} is corrupt: it lists no weight_map")
        shapes: dict[str, list[int]] = {}
        for shard in shards:
            shapes.update(_safetensors_shapes(folder / shard))
        return shapes
    if (folder / SAFE_WEIGHTS).exists():
        return _safetensors_shapes(folder / SAFE_WEIGHTS)
    pickled = [name for name in PICKLED_WEIGHTS if (folder / name).exists()]
    if pickled:
        raise CheckpointError(f"checkpoint {folder} holds pickled weights ({pickled[0]}) and no {SAFE_WEIGHTS}; "
                              "gamer_hf resumes only from safetensors weights")
    if engine_state:
        return None  # the DeepSpeed / FSDP engine loads and checks its own state
    raise CheckpointError(f"checkpoint {folder} is incomplete: {SAFE_WEIGHTS} is missing")


def _check_torch_file(path: Path) -> None:
    """torch.save files are zip archives: a truncated or bit-flipped one fails the archive's CRC check."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"checkpoint file {path} is corrupt or truncated: {error}") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint file {path} is corrupt: member {bad} fails its CRC check")


def _check_against_model(folder: Path, shapes: Mapping[str, list[int]], expected: Mapping[str, list[int]],
                         optional: set[str]) -> None:
    where = folder / SAFE_WEIGHTS
    missing = sorted(set(expected) - set(shapes) - optional)
    if missing:
        raise CheckpointError(f"checkpoint file {where} lacks {len(missing)} tensors of this model "
                              f"(first: {missing[:3]}); was it saved for another architecture?")
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise CheckpointError(f"checkpoint file {where} holds {len(unexpected)} tensors this model does not have "
                              f"(first: {unexpected[:3]}); check preset / ablation against the killed run")
    wrong = [f"{key}: {shapes[key]} vs model {expected[key]}" for key in sorted(shapes) if shapes[key] != expected[key]]
    if wrong:
        raise CheckpointError(f"checkpoint file {where} has tensors of other shapes than this model ({wrong[0]}); "
                              "check preset / ablation / tokenizer against the killed run")


def validate_checkpoint(
    folder: str | Path,
    expected_shapes: Mapping[str, list[int]] | None = None,
    optional_keys: set[str] | None = None,
) -> int:
    """Check that `folder` is a complete, readable Trainer checkpoint; return its global step.

    `expected_shapes` (tensor name -> shape of the model about to resume) also checks that every
    weight is present with the right shape; `optional_keys` may be absent (tied weights). Weights whose
    sha256 differs from the one `ChecksumCallback` recorded are refused.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist or is not a folder")
    state = _read_json(folder / TRAINER_STATE)
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise CheckpointError(f"checkpoint file {folder / TRAINER_STATE} is corrupt: it has no integer global_step")
    _read_json(folder / CONFIG)
    engine_state = _engine_state(folder)
    shapes = _weight_shapes(folder, engine_state)
    if shapes is not None and expected_shapes is not None:
        _check_against_model(folder, shapes, expected_shapes, optional_keys or set())
    if (folder / SAFE_WEIGHTS).is_file():
        verify_checksums(folder)
    if not engine_state:
        if not any((folder / name).is_file() for name in OPTIMIZER_FILES):
            raise CheckpointError(f"checkpoint {folder} is incomplete: {OPTIMIZER_FILES[0]} is missing")
        if not (folder / SCHEDULER_FILE).is_file():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {SCHEDULER_FILE} is missing")
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in TORCH_SUFFIXES:
            _check_torch_file(path)
    return state["global_step"]
