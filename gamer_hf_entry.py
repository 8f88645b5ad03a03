"""The `gamer-hf` console script, kept outside the gamer_hf package on purpose.

Importing anything under gamer_hf runs `gamer_hf/__init__.py`, which registers the model with the
Transformers Auto classes and so imports torch and transformers: seconds before the first line of
output. This module answers `gamer-hf`, `gamer-hf --help` and an unknown command from the table of
commands alone, and imports `gamer_hf.cli` only to run a command.
"""

from __future__ import annotations

import sys

__all__ = ["COMMANDS", "DEBUG_FLAG", "answer_without_command", "main"]

DEBUG_FLAG = "--debug"

# subcommand -> (module, argument dataclass name, one-line help). Modules load only when their
# command runs, so one broken optional dependency cannot break every command.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "prepare": ("gamer_hf.cli.prepare", "PrepareArguments", "events -> sessions -> splits -> training sequences"),
    "semantic-ids": ("gamer_hf.cli.semantic_ids", "SemanticIdArguments", "item embeddings -> code tuples -> tokenizer"),
    "train": ("gamer_hf.cli.train", "TrainArguments", "train GAMER with the Trainer (works under accelerate launch)"),
    "evaluate": ("gamer_hf.cli.evaluate", "EvaluateArguments", "full-catalogue HR/Recall/NDCG per behavior, with baselines"),
    "recommend": ("gamer_hf.cli.recommend", "RecommendArguments", "top-K items for one history under a behavior"),
    "quickstart": ("gamer_hf.cli.quickstart", "QuickstartArguments", "the whole job on synthetic data (or --events FILE)"),
    "push": ("gamer_hf.cli.push", "PushArguments", "upload a checkpoint with remote code and a model card"),
    "serve": ("gamer_hf.cli.serve", "ServeArguments", "micro-batched HTTP recommendation service (FastAPI)"),
}


def answer_without_command(argv: list[str]) -> int | None:
    """The exit code for a command line that names no known command (after printing the usage or
    the error), or None when argv[0] is a command to run."""
    words = [arg for arg in argv if arg != DEBUG_FLAG]
    if not words or words[0] in {"-h", "--help"}:
        lines = ["usage: gamer-hf COMMAND [--config recipe.yaml] [options]", "", "commands:"]
        lines += [f"  {name:<14}{help_}" for name, (_, _, help_) in COMMANDS.items()]
        lines += ["", "Run `gamer-hf COMMAND --help` for the options of one command; add --debug to see the "
                  "traceback of an error."]
        print("\n".join(lines))
        return 0 if words else 2
    if words[0] not in COMMANDS:
        print(f"gamer-hf: unknown command {words[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    code = answer_without_command(argv)
    if code is not None:
        return code
    from gamer_hf.cli import main as run_command  # here, not above: it imports torch and transformers

    return run_command(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
