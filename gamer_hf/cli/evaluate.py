"""`gamer-hf evaluate`: full-catalogue HR/Recall/NDCG of a checkpoint against the rule baselines.

Results go next to the checkpoint (`eval_results.json` / `.md` / `eval_ndcg10.png`) so that the
model card later reads measured facts. The protocol is `gamer_hf.evaluation.evaluate_checkpoint`.
"""

from __future__ import annotations

from ..evaluation import EVAL_FILES, EvaluateArguments, evaluate_checkpoint

__all__ = ["EvaluateArguments", "evaluate_checkpoint", "run"]


def run(args: EvaluateArguments) -> int:
    report = evaluate_checkpoint(args)
    print(report.to_markdown())
    print(f"\nsaved {', '.join(EVAL_FILES)} in {args.out or args.model}")
    return 0
