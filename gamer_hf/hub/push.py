"""Publish a GAMER checkpoint to the Hub in one commit: weights, config, tokenizer with its item
index, remote code, the pipeline, training/evaluation facts and a model card.

The checkpoint is loaded through the one verified loader (every tensor present and finite, the
weights' recorded sha256 matching) before the Hub is asked anything, and everything is assembled in a
local staging folder (a clean `save_pretrained` of model and tokenizer with a fresh weights digest,
the card rendered from the checkpoint's own metadata), so a checkpoint that is incomplete or
inconsistent is refused before any repo is created or byte is uploaded. The upload is a single
`create_commit` on top of the branch head it was prepared against; unchanged files are skipped by
huggingface_hub, so pushing the same checkpoint again creates no commit, and re-running a push that
failed half-way resumes it (LFS files already stored are not sent again). Hub failures (a refused
token, an unreachable endpoint, a server that dies mid-upload) raise `HubError` naming the endpoint
and what to do.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError, HTTPError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
from transformers import PreTrainedModel

from ..checkpoint import (
    EVAL_RESULTS_FILE,
    EXTRA_FILES,
    LEGACY_ITEM_INDEX_FILE,
    TRAINING_INFO_FILE,
    check_checkpoint_dir,
    check_finite,
    check_layout,
    hidden_weight_bars,
    load_checkpoint,
    record_checksums,
)
from ..errors import CheckpointError, HubError, InputError, OutputExistsError
from ..files import read_json
from .card import build_model_card

__all__ = ["DEFAULT_COMMIT_MESSAGE", "PIPELINE_FILE", "PushResult", "build_upload_folder", "push_to_hub"]

DEFAULT_COMMIT_MESSAGE = "Upload GAMER checkpoint"
PIPELINE_FILE = "pipeline_gamer.py"  # written by save_pretrained with the model code, for users without gamer_hf
HANDLER_FILE = "handler.py"  # gamer_hf/serve/handler.py: the Inference Endpoints custom handler
HANDLER_SOURCE = Path(__file__).resolve().parents[1] / "serve" / HANDLER_FILE  # a path: push needs no serve extra
PLOT_FILE = "eval_ndcg10.png"
# Files an earlier push may have left that would contradict this one (other weight layouts, facts
# this checkpoint does not have); deleted in the same commit when the new upload lacks them.
STALE_PATTERNS = (*EXTRA_FILES, "model.safetensors.index.json", "model-*.safetensors", "pytorch_model*.bin",
                  LEGACY_ITEM_INDEX_FILE)


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit_oid: str
    commit_url: str | None
    changed: bool  # False when the branch already held exactly these files
    files: tuple[str, ...]


@dataclass(frozen=True)
class _Verified:
    """What is published: a model that passed the loader's checks, its tokenizer, and the folder's facts."""

    model: PreTrainedModel
    tokenizer: Any
    folder: Path | None  # None for an in-memory model
    facts: dict[str, Any]  # TRAINING_INFO_FILE / EVAL_RESULTS_FILE -> content (None when absent)


def _load(model_dir_or_model: Any, tokenizer: Any) -> _Verified:
    """Load and verify everything local, so that nothing wrong is found after the Hub was contacted."""
    if isinstance(model_dir_or_model, (str, os.PathLike)):
        folder = Path(model_dir_or_model)
        model, tokenizer = load_checkpoint(folder, tokenizer)
        facts = {name: read_json(folder / name, None) for name in (TRAINING_INFO_FILE, EVAL_RESULTS_FILE)}
        _check_facts_match(tokenizer, facts)
        return _Verified(model, tokenizer, folder, facts)
    model = model_dir_or_model
    if getattr(model.config, "model_type", None) != "gamer" or not callable(getattr(model, "recommend", None)):
        raise TypeError(f"push_to_hub takes a GAMER checkpoint folder or a GamerForCausalLM, "
                        f"got {type(model).__name__}")
    if tokenizer is None or not hasattr(tokenizer, "item_index"):
        raise InputError("pushing an in-memory model needs its GAMER tokenizer: pass tokenizer=...")
    check_layout(model, tokenizer, "push_to_hub")
    check_finite(model, "push_to_hub's model")
    return _Verified(model, tokenizer, None, dict.fromkeys((TRAINING_INFO_FILE, EVAL_RESULTS_FILE)))


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
    _check_empty(out)
    return _stage(_load(model_dir_or_model, tokenizer), out, repo_id, dataset_id)


def _check_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"{out} is not an empty folder; the upload folder must hold only what is pushed")


def _stage(verified: _Verified, out: Path, repo_id: str, dataset_id: str | None) -> list[str]:
    model, tokenizer, folder, facts = verified.model, verified.tokenizer, verified.folder, verified.facts
    out.mkdir(parents=True, exist_ok=True)
    with hidden_weight_bars():
        model.save_pretrained(out)
    record_checksums(out)  # downloaders verify the weights against the digest of what was uploaded
    tokenizer.save_pretrained(out)
    shutil.copyfile(HANDLER_SOURCE, out / HANDLER_FILE)
    for name in EXTRA_FILES:
        if folder is not None and (folder / name).is_file():
            if name.endswith(".json"):  # the records name local folders: publish only their last part
                text = json.dumps(_without_local_paths(facts[name]), indent=2)
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
        raise HubError(f"the Hub at {api.endpoint} rejected the model card metadata: {response.text}")
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
    verified = _load(model_dir_or_model, tokenizer)  # before the Hub is asked anything
    branch = revision or "main"
    with tempfile.TemporaryDirectory(prefix="gamer-push-") as staging_root:
        staging = Path(staging_root) / "upload"
        with _hub_errors(api, "asking who the token belongs to", repo_id):
            repo_id = _full_repo_id(api, repo_id)
        files = _stage(verified, staging, repo_id, dataset_id)
        with _hub_errors(api, "validating the model card", repo_id):
            _validate_card(api, staging / "README.md")
        with _hub_errors(api, f"creating {repo_id}", repo_id):
            repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
            if branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True)
        with _hub_errors(api, f"uploading to {repo_id}@{branch}", repo_id, resumable=True):
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


@contextmanager
def _hub_errors(api: HfApi, action: str, repo_id: str, resumable: bool = False) -> Iterator[None]:
    """Turn what the Hub or the network raised while doing `action` into one HubError saying what to do."""
    again = ("re-run the same push to resume it (nothing was committed; files already uploaded are not sent "
             "again)") if resumable else "re-run the push"
    try:
        yield
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        message = (error.server_message or str(error)).splitlines()[0]
        if status in (401, 403):
            raise HubError(f"the Hub at {api.endpoint} refused the token ({status}: {message}) while {action}: log in "
                           f"with `hf auth login` or set HF_TOKEN to a token with write access to {repo_id}") from None
        raise HubError(f"the Hub at {api.endpoint} answered {status} while {action}: {message}; {again}") from None
    except HTTPError as error:
        raise HubError(f"cannot reach the Hub at {api.endpoint} while {action} ({type(error).__name__}: {error}); "
                       f"check the network and HF_ENDPOINT, then {again}") from None
    except RuntimeError as error:  # huggingface_hub reuses a client it closed after a dropped connection
        if "client has been closed" not in str(error):
            raise
        raise HubError(f"the connection to the Hub at {api.endpoint} broke while {action}; {again}") from None
