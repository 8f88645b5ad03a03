"""`gamer-hf push`: publish a checkpoint folder to the Hub in one commit, with remote code and a model card.

    gamer-hf push --model runs/shop/gamer-small --repo_id my-org/gamer-shop [--private] [--revision v2]
    gamer-hf push --model runs/shop/gamer-small --repo_id my-org/gamer-shop --dry_run /tmp/upload

The token comes from `hf auth login` or HF_TOKEN, the server from HF_ENDPOINT (default huggingface.co).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..hub import DEFAULT_COMMIT_MESSAGE, build_upload_folder, push_to_hub

__all__ = ["PushArguments", "run"]


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "GAMER checkpoint folder (from `gamer-hf train`, evaluated or not)"})
    repo_id: str = field(metadata={"help": "target repo, ORG/NAME (or NAME under your own account)"})
    private: bool = field(default=False, metadata={"help": "create the repo private (no effect on an existing repo)"})
    revision: Optional[str] = field(
        default=None, metadata={"help": "branch to commit to, created from main when missing; main is left untouched"}
    )
    commit_message: str = field(default=DEFAULT_COMMIT_MESSAGE, metadata={"help": "commit message"})
    dataset_id: Optional[str] = field(
        default=None, metadata={"help": "Hub id of the training dataset, listed in the model card metadata"}
    )
    dry_run: Optional[str] = field(
        default=None, metadata={"help": "write the exact upload folder (with README.md) here instead of pushing"}
    )


def run(args: PushArguments) -> int:
    if args.dry_run is not None:
        files = build_upload_folder(args.model, args.dry_run, args.repo_id, dataset_id=args.dataset_id)
        print(f"wrote {len(files)} files to {args.dry_run} (nothing uploaded): {', '.join(files)}")
        return 0
    result = push_to_hub(args.model, args.repo_id, private=args.private, revision=args.revision,
                         commit_message=args.commit_message, dataset_id=args.dataset_id)
    if result.changed:
        print(f"pushed {len(result.files)} files to {result.repo_id}@{result.revision}: {result.commit_url}")
    else:
        print(f"{result.repo_id}@{result.revision} already holds this checkpoint (commit {result.commit_oid}); "
              "nothing to push")
    return 0
