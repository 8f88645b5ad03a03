"""`gamer-hf evaluate`: full-catalogue HR/Recall/NDCG of a checkpoint against the rule baselines.

Results go next to the checkpoint (`eval_results.json` / `.md` / `eval_ndcg10.png`) so that the
model card later reads measured facts.
"""

from __future__ import annotations

import logging
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
    HistoryReranker,
    MostPopular,
    Repeat,
    items_seen,
    plot_per_behavior,
)
from ..loading import load_gamer

__all__ = ["EvaluateArguments", "evaluate_checkpoint", "run"]

logger = logging.getLogger(__name__)


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
    rerank: bool = field(default=True, metadata={
        "help": "also score GAMER+rerank and Repeat+learned: HistoryRerankers fit on the validation split"})
    rerank_cases: int = field(default=1000, metadata={"help": "validation cases the rerankers are fit on (seeded subset)"})
    out: Optional[str] = field(default=None, metadata={"help": "output folder (default: the checkpoint)"})
    seed: int = field(default=0, metadata={"help": "seed of the case subset"})


def evaluate_checkpoint(args: EvaluateArguments, progress: bool = True) -> EvaluationReport:
    """GAMER (decoded once, scored plain and history-mixed), MostPopular and Repeat on the same cases."""
    model, tokenizer = load_gamer(args.model)
    prepared = load_prepared(args.data)
    if args.split not in prepared.splits:
        raise ValueError(f"{args.data} has no split {args.split!r}; it has {list(prepared.splits)}")
    cases = _subset(prepared.splits[args.split], args.max_cases, args.seed)
    evaluator = Evaluator(cases, prepared.metadata["behaviors"], batch_size=args.batch_size, progress=progress,
                          known_items=items_seen(prepared.splits["train"]["items"]))
    if args.num_beams < evaluator.top_k:
        raise ValueError(f"num_beams={args.num_beams} cannot fill top-{evaluator.top_k} lists: use at least {evaluator.top_k}")
    max_history = args.max_history or prepared.metadata.get("max_history")
    gamer = GamerRecommender(model, tokenizer, num_beams=args.num_beams, max_history=max_history, on_unknown="skip")
    report = evaluator.report(metadata={
        "checkpoint": str(args.model), "data": str(args.data), "split": args.split, "cases": len(evaluator.cases),
        "num_beams": args.num_beams, "max_history": max_history,
    })
    start = time.perf_counter()  # every beam: the mixer fills from them and the reranker pools them
    generated = evaluator.predict(lambda batch, _: gamer.generate(batch, args.num_beams), desc="evaluate GAMER")
    seconds = time.perf_counter() - start
    report.add(evaluator.score([[item for item, _ in row] for row in generated], "GAMER", seconds))
    if args.repeat_slots:
        mixer = HistoryMixer(repeat_slots=args.repeat_slots)
        mixed = [mixer.mix(row, case, evaluator.top_k) for row, case in zip(generated, evaluator.cases)]
        report.add(evaluator.score(mixed, f"GAMER+repeat{args.repeat_slots}", seconds))
    # Popularity is fit on the histories the cases already show: interactions before the held-out session.
    report.add(evaluator.evaluate(MostPopular().fit(cases), "MostPopular", baseline=True))
    report.add(evaluator.evaluate(Repeat(), "Repeat", baseline=True))
    if args.rerank and args.split != "validation" and "validation" in prepared.splits:
        held_out = _subset(prepared.splits["validation"], args.rerank_cases, args.seed)
        _add_reranked(report, evaluator, gamer, held_out, generated, seconds)
    out = Path(args.out or args.model)
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "eval_results.json")
    report.save_markdown(out / "eval_results.md")
    plot_per_behavior(report, out / "eval_ndcg10.png")
    return report


def _subset(cases: Any, limit: int | None, seed: int) -> Any:
    """A seeded random subset of a split's cases, in their order (all of them within the limit)."""
    if limit is None or len(cases) <= limit:
        return cases
    return cases.select(sorted(random.Random(seed).sample(range(len(cases)), limit)))


def _add_reranked(report: EvaluationReport, evaluator: Evaluator, gamer: GamerRecommender, held_out: Any,
                  generated: list[list[tuple[str, float]]], seconds: float) -> None:
    """GAMER+rerank and its model-free twin Repeat+learned, both fit on validation cases; popularity is counted on
    those cases' histories, so no fitted feature has seen a held-out target."""
    behaviors = evaluator.behaviors
    popular = MostPopular().fit(held_out)
    try:
        learned = HistoryReranker(behaviors, popular, use_model=False).fit(held_out)
        gamer.fit_reranker(held_out, HistoryReranker(behaviors, popular))
    except ValueError as error:  # e.g. no validation target in any pool: nothing to learn from
        logger.warning("skipping GAMER+rerank and Repeat+learned: %s", error)
        return
    start = time.perf_counter()
    reranked = gamer.rerank(evaluator.cases, generated, evaluator.top_k)  # the test beams GAMER's row decoded
    report.add(evaluator.score(reranked, "GAMER+rerank", seconds + time.perf_counter() - start))
    report.add(evaluator.evaluate(learned, "Repeat+learned", baseline=True))


def run(args: EvaluateArguments) -> int:
    report = evaluate_checkpoint(args)
    print(report.to_markdown())
    print(f"\nsaved eval_results.json, eval_results.md and eval_ndcg10.png in {args.out or args.model}")
    return 0
