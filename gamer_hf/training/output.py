"""The output folder: refuse to clobber earlier work, and publish the final model in one swap.

Layout: `<output_dir>` is the final (best) model, loadable with `from_pretrained`, plus
`gamer_training.json`; `<output_dir>/checkpoints/checkpoint-N` are the Trainer's checkpoints,
pruned once the model is published to what resuming still needs (nothing after a completed run).
The final model is written completely into a staging sibling and swapped in with renames, so a
reader (or a crash) never sees an old config next to new weights; the checkpoints folder moves
along with it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..checkpoint import TRAINING_INFO_FILE, record_checksums
from ..errors import ConfigurationError, OutputExistsError
from ..files import ordinary_permissions, replace_directory
from .checkpoints import CHECKPOINTS_SUBDIR, TRAINER_STATE, list_checkpoints

__all__ = ["TRAINING_INFO_FILE", "check_output_dir", "finish_staging", "prune_checkpoints", "publish", "staging_dir"]

# The Trainer pickles its TrainingArguments next to every save; a published model does not need it.
PICKLED_ARGS_FILE = "training_args.bin"


def staging_dir(out: Path) -> Path:
    """Where the final model is assembled: a hidden sibling, the same for every process of a run."""
    return out.parent / f".{out.name}.staging"


def check_output_dir(out: Path, resuming: bool, overwrite: bool) -> bool:
    """Raise when this run would clobber a finished model, another run's checkpoints or foreign files.

    Returns True when earlier checkpoints must be deleted first (overwrite without resuming).
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output_dir {out} exists and is not a folder")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise ConfigurationError(f"output_dir {out} is or holds the working directory; the finished model replaces "
                         "output_dir as a whole, so choose a folder inside it")
    stranded = staging_dir(out) / CHECKPOINTS_SUBDIR
    if stranded.exists():
        raise OutputExistsError(f"{stranded} holds the checkpoints of a run whose final save was interrupted; move "
                              f"it back to {out / CHECKPOINTS_SUBDIR} (or delete it) and run again")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    checkpoints = list_checkpoints(out / CHECKPOINTS_SUBDIR)
    if overwrite:
        return bool(checkpoints) and not resuming
    finished = TRAINING_INFO_FILE in entries
    foreign = [name for name in entries if name != CHECKPOINTS_SUBDIR]
    if foreign and not finished:
        what = "a model that `gamer-hf train` did not write" if "config.json" in entries else "other files"
        raise OutputExistsError(f"output_dir {out} holds {what} (first: {foreign[0]}); choose a new folder or pass "
                              "overwrite_output_dir=true to replace its contents")
    if resuming:
        return False
    if finished:
        resumable = ", or resume_from_checkpoint=auto to continue its stopped run" if checkpoints else ""
        raise OutputExistsError(f"output_dir {out} already holds a finished model ({TRAINING_INFO_FILE}); pass "
                                f"overwrite_output_dir=true to replace it{resumable}")
    if checkpoints:
        raise OutputExistsError(f"{out / CHECKPOINTS_SUBDIR} holds checkpoints of an earlier run (newest "
                              f"{checkpoints[-1].name}); pass resume_from_checkpoint=auto to continue it or "
                              "overwrite_output_dir=true to start over")
    return False


def finish_staging(staging: Path, info: dict[str, Any]) -> None:
    """Add the training facts a model card reads and the weights digest the loader verifies, drop the
    pickled TrainingArguments, and give every file ordinary permissions (some savers create theirs
    0600 through temporary files)."""
    (staging / PICKLED_ARGS_FILE).unlink(missing_ok=True)
    (staging / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=1, default=str) + "\n", encoding="utf-8")
    record_checksums(staging)
    ordinary_permissions(staging)


def publish(staging: Path, out: Path) -> None:
    """Swap the complete `staging` folder in as `out`; `out`'s checkpoints folder moves along.

    On failure the checkpoints are moved back, so a failed publish never loses them.
    """
    if not out.exists():
        os.replace(staging, out)
        return
    kept = out / CHECKPOINTS_SUBDIR
    carried = kept.exists()
    if carried:
        os.replace(kept, staging / CHECKPOINTS_SUBDIR)
    try:
        replace_directory(staging, out)
    except BaseException:
        if carried and (staging / CHECKPOINTS_SUBDIR).exists():
            os.replace(staging / CHECKPOINTS_SUBDIR, kept)
        raise


def _resume_set(checkpoints: list[Path]) -> set[Path]:
    """The newest checkpoint and the best one its trainer state names (loaded at the end of a resumed run)."""
    newest = checkpoints[-1]
    try:
        best = json.loads((newest / TRAINER_STATE).read_text(encoding="utf-8")).get("best_model_checkpoint")
    except (OSError, ValueError):
        best = None
    named = {path for path in checkpoints if best is not None and path.name == Path(best).name}
    return {newest, *named}


def prune_checkpoints(root: Path, completed: bool) -> None:
    """Delete the checkpoints a finished run no longer needs.

    A completed run keeps none; a run stopped before its end keeps what resuming it needs. What is
    deleted is first renamed into one hidden folder, so a crash midway never leaves a half-deleted
    checkpoint behind under a `checkpoint-N` name.
    """
    found = list_checkpoints(root)
    keep = set() if completed or not found else _resume_set(found)
    dropped = [path for path in found if path not in keep]
    if dropped:
        trash = Path(tempfile.mkdtemp(prefix=".deleting-", dir=root))
        for path in dropped:
            os.replace(path, trash / path.name)
        shutil.rmtree(trash, ignore_errors=True)
    if not keep and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
