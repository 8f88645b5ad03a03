"""Publish a GAMER checkpoint to the Hub in one commit: weights, config, tokenizer with its item
index, remote code, the pipeline, training/evaluation facts and a model card.

Everything is assembled and checked in a local staging folder first (a clean `save_pretrained` of
model and tokenizer, the card rendered from the checkpoint's own metadata), so a checkpoint that is
incomplete or inconsistent is refused before any repo is created or byte is uploaded. The upload is
a single `create_commit` on top of the branch head it was prepared against; unchanged files are
skipped by huggingface_hub, so pushing the same checkpoint again creates no commit.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
from transformers import PreTrainedModel

from .card import build_model_card
from .checkpoint import (
    EVAL_RESULTS_FILE,
    EXTRA_FILES,
    TRAINING_INFO_FILE,
    CheckpointError,
    check_checkpoint_dir,
    check_layout,
    load_checkpoint,
    read_json,
)

__all__ = ["DEFAULT_COMMIT_MESSAGE", "PIPELINE_FILE", "PushResult", "build_upload_folder", "push_to_hub"]

DEFAULT_COMMIT_MESSAGE = "Upload GAMER checkpoint"
PIPELINE_FILE = "pipeline_gamer.py"  # written by save_pretrained with the model code, for users without gamer_hf
PLOT_FILE = "eval_ndcg10.png"
# Files an earlier push may have left that would contradict this one (other weight layouts, facts
# this checkpoint does not have); deleted in the same commit when the new upload lacks them.
STALE_PATTERNS = (*EXTRA_FILES, "model.safetensors.index.json", "model-*.safetensors", "pytorch_model*.bin")


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit_oid: str
    commit_url: str | None
    changed: bool  # False when the branch already held exactly these files
    files: tuple[str, ...]


def _load(model_dir_or_model: Any, tokenizer: Any) -> tuple[PreTrainedModel, Any, Path | None]:
    """Model, tokenizer and the checkpoint folder (None for an in-memory model)."""
    if isinstance(model_dir_or_model, (str, os.PathLike)):
        folder = Path(model_dir_or_model)
        model, tokenizer = load_checkpoint(folder, tokenizer)
        return model, tokenizer, folder
    model = model_dir_or_model
    if getattr(model.config, "model_type", None) != "gamer" or not callable(getattr(model, "recommend", None)):
        raise TypeError(f"push_to_hub takes a GAMER checkpoint folder or a GamerForCausalLM, "
                        f"got {type(model).__name__}")
    if tokenizer is None or not hasattr(tokenizer, "item_index"):
        raise ValueError("pushing an in-memory model needs its GAMER tokenizer: pass tokenizer=...")
    check_layout(model, tokenizer, "push_to_hub")
    return model, tokenizer, None


def build_upload_folder(
    model_dir_or_model: Any,
    out: str | os.PathLike,
    repo_id: str,
    *,
    tokenizer: Any = None,
    dataset_id: str | None = None,
) -> list[str]:
    """Write exactly what `push_to_hub` uploads into the empty or new folder `out`; returns the file names.

    Useful on its own to review the card before publishing (`gamer-hf push --dry_run DIR`).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; the upload folder must hold only what is pushed")
    model, tokenizer, folder = _load(model_dir_or_model, tokenizer)
    facts = {name: read_json(folder / name) if folder and (folder / name).is_file() else None
             for name in (TRAINING_INFO_FILE, EVAL_RESULTS_FILE)}
    _check_facts_match(tokenizer, facts)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in EXTRA_FILES:
        if folder is not None and (folder / name).is_file():
            if name.endswith(".json"):  # the records name local folders: publish only their last part
                text = json.dumps(_without_local_paths(read_json(folder / name)), indent=2)
                (out / name).write_text(text + "\n", encoding="utf-8")
            else:
                shutil.copyfile(folder / name, out / name)
    card = build_model_card(
        model, tokenizer, repo_id,
        training=facts[TRAINING_INFO_FILE], evaluation=facts[EVAL_RESULTS_FILE], dataset_id=dataset_id,
        plot=PLOT_FILE if (out / PLOT_FILE).is_file() else None,
    )
    card.save(out / "README.md")
    check_checkpoint_dir(out)  # what a downloader gets must pass the same check
    return sorted(path.name for path in out.iterdir())


def _without_local_paths(value: Any) -> Any:
    """A copy of a JSON value where absolute local paths become their final component."""
    if isinstance(value, dict):
        return {key: _without_local_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_local_paths(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and len(Path(value).parts) > 1:
        return Path(value).name
    return value


def _check_facts_match(tokenizer: Any, facts: dict[str, Any]) -> None:
    """Refuse metadata files written for another behavior table: their numbers would be misattributed."""
    ours = dict(tokenizer.behaviors)
    evaluation = facts[EVAL_RESULTS_FILE]
    if evaluation is not None and dict(evaluation.get("behaviors", {})) != ours:
        raise CheckpointError(f"{EVAL_RESULTS_FILE} scores behaviors {evaluation.get('behaviors')} but the checkpoint "
                              f"has {ours}; re-run `gamer-hf evaluate` on this checkpoint")
    training = facts[TRAINING_INFO_FILE]
    if training is not None and "behaviors" in training:
        recorded = {row.get("name"): row.get("level") for row in training["behaviors"]}
        if recorded != ours:
            raise CheckpointError(f"{TRAINING_INFO_FILE} records behaviors {recorded} but the checkpoint has {ours}")


def _validate_card(api: HfApi, readme: Path) -> None:
    """Ask the Hub to validate the card's metadata (what `ModelCard.validate` does, on `api`'s endpoint)."""
    response = get_session().post(
        f"{api.endpoint}/api/validate-yaml",
        json={"repoType": "model", "content": readme.read_text(encoding="utf-8")},
        headers=build_hf_headers(token=api.token),
    )
    if response.status_code == 400:
        raise ValueError(f"the Hub rejected the model card metadata: {response.text}")
    hf_raise_for_status(response)


def _full_repo_id(api: HfApi, repo_id: str) -> str:
    return repo_id if "/" in repo_id else f"{api.whoami()['name']}/{repo_id}"


def push_to_hub(
    model_dir_or_model: Any,
    repo_id: str,
    *,
    tokenizer: Any = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    token: str | None = None,
    endpoint: str | None = None,
    dataset_id: str | None = None,
) -> PushResult:
    """Upload a GAMER checkpoint folder (or an in-memory GamerForCausalLM plus `tokenizer`) as one commit.

    The repo is created if needed (`private` applies only then); `revision` names a branch, created
    from main when missing, and main is left untouched. `dataset_id` is the Hub id of the training
    data, listed in the card metadata. Raises CheckpointError before any upload when the folder is
    not a complete checkpoint.
    """
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="gamer-push-") as staging_root:
        staging = Path(staging_root) / "upload"
        if isinstance(model_dir_or_model, (str, os.PathLike)):
            check_checkpoint_dir(Path(model_dir_or_model))  # before even asking the Hub who we are
        repo_id = _full_repo_id(api, repo_id)
        files = build_upload_folder(model_dir_or_model, staging, repo_id, tokenizer=tokenizer, dataset_id=dataset_id)
        _validate_card(api, staging / "README.md")
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        branch = revision or "main"
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        head = api.repo_info(repo_id, revision=branch).sha
        remote = api.list_repo_files(repo_id, revision=head)
        stale = [path for path in remote if path not in files
                 and any(fnmatch.fnmatch(path, pattern) for pattern in STALE_PATTERNS)]
        operations: list[Any] = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(staging / name))
                                 for name in files]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message,
                                   revision=branch, parent_commit=head)
    return PushResult(repo_id=repo_id, revision=branch, commit_oid=commit.oid, commit_url=commit.commit_url,
                      changed=commit.oid != head, files=tuple(files))
