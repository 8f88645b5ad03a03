"""`gamer-hf evaluate`: full-catalogue HR/Recall/NDCG of a checkpoint against the rule baselines.

Results go next to the checkpoint (`eval_results.json` / `.md` / `eval_ndcg10.png`) so that the
model card later reads measured facts.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..data.prepare import load_prepared
from ..evaluation import (
    EvaluationReport,
    Evaluator,
    GamerRecommender,
    HistoryMixer,
    MostPopular,
    Repeat,
    plot_per_behavior,
)
from ..loading import load_gamer

__all__ = ["EvaluateArguments", "evaluate_checkpoint", "run"]


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "GAMER checkpoint directory"})
    data: str = field(metadata={"help": "prepared data directory (gamer-hf prepare)"})
    split: str = field(default="test", metadata={"help": "test or validation"})
    num_beams: int = field(default=20, metadata={"help": "beam width of the constrained search"})
    batch_size: int = field(default=64, metadata={"help": "histories per recommend() call"})
    max_history: Optional[int] = field(default=None, metadata={"help": "interactions per prompt (default: as prepared)"})
    max_cases: Optional[int] = field(default=None, metadata={"help": "evaluate a seeded random subset of cases"})
    repeat_slots: int = field(
        default=3, metadata={"help": "also score GAMER with the n most recent history items first (0: skip)"}
    )
    out: Optional[str] = field(default=None, metadata={"help": "output folder (default: the checkpoint)"})
    seed: int = field(default=0, metadata={"help": "seed of the case subset"})


def evaluate_checkpoint(args: EvaluateArguments, progress: bool = True) -> EvaluationReport:
    """GAMER (decoded once, scored plain and history-mixed), MostPopular and Repeat on the same cases."""
    model, tokenizer = load_gamer(args.model)
    prepared = load_prepared(args.data)
    if args.split not in prepared.splits:
        raise ValueError(f"{args.data} has no split {args.split!r}; it has {list(prepared.splits)}")
    cases: Any = prepared.splits[args.split]
    if args.max_cases is not None and len(cases) > args.max_cases:
        cases = cases.select(sorted(random.Random(args.seed).sample(range(len(cases)), args.max_cases)))
    evaluator = Evaluator(cases, prepared.metadata["behaviors"], batch_size=args.batch_size, progress=progress)
    max_history = args.max_history or prepared.metadata.get("max_history")
    gamer = GamerRecommender(model, tokenizer, num_beams=args.num_beams, max_history=max_history, on_unknown="skip")
    report = evaluator.report(metadata={
        "checkpoint": str(args.model), "data": str(args.data), "split": args.split, "cases": len(evaluator.cases),
        "num_beams": args.num_beams, "max_history": max_history,
    })
    start = time.perf_counter()
    generated = evaluator.predict(gamer.generate, desc="evaluate GAMER")
    seconds = time.perf_counter() - start
    report.add(evaluator.score([[item for item, _ in row] for row in generated], "GAMER", seconds))
    if args.repeat_slots:
        mixer = HistoryMixer(repeat_slots=args.repeat_slots)
        mixed = [mixer.mix(row, case, evaluator.top_k) for row, case in zip(generated, evaluator.cases)]
        report.add(evaluator.score(mixed, f"GAMER+repeat{args.repeat_slots}", seconds))
    # Popularity is fit on the histories the cases already show: interactions before the held-out session.
    report.add(evaluator.evaluate(MostPopular().fit(cases), "MostPopular"))
    report.add(evaluator.evaluate(Repeat(), "Repeat"))
    out = Path(args.out or args.model)
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "eval_results.json")
    report.save_markdown(out / "eval_results.md")
    plot_per_behavior(report, out / "eval_ndcg10.png")
    return report


def run(args: EvaluateArguments) -> int:
    report = evaluate_checkpoint(args)
    print(report.to_markdown())
    print(f"\nsaved eval_results.json, eval_results.md and eval_ndcg10.png in {args.out or args.model}")
    return 0
