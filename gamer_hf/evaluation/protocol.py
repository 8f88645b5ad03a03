"""The evaluation protocol of a trained checkpoint: which models are scored on which cases, and where
the report goes. `gamer-hf evaluate`, the quickstart and the benchmarks call these functions.

GAMER's beams are decoded once per case and reused: the plain row, the history-mixed row and the
reranked row are cut from the same beams, so their differences are the blend's, not the decoder's.
Rerankers are fit only on validation cases (never on the split being scored), with popularity
counted on those cases' histories, so no fitted feature has seen a held-out target.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..checkpoint import EVAL_RESULTS_FILE, default_device, load_checkpoint
from ..data.prepare import load_prepared
from ..errors import ConfigurationError, OutputExistsError
from .baselines import MostPopular, Repeat
from .evaluator import Evaluator
from .gamer_recommender import GamerRecommender
from .mixing import HistoryMixer
from .plotting import plot_per_behavior
from .reranking import HistoryReranker
from .results import EvaluationReport
from .user_sample import distinct_items, sample_users

__all__ = ["EVAL_FILES", "EvaluateArguments", "decode_beams", "evaluate_checkpoint", "subset_cases"]

logger = logging.getLogger(__name__)

EVAL_FILES = (EVAL_RESULTS_FILE, "eval_results.md", "eval_ndcg10.png")  # written beside the checkpoint

Beams = list[list[tuple[str, float]]]


@dataclass
class EvaluateArguments:
    """What `evaluate_checkpoint` scores; also the arguments of `gamer-hf evaluate`."""

    model: str = field(metadata={"help": "GAMER checkpoint directory"})
    data: str = field(metadata={"help": "prepared data directory (gamer-hf prepare)"})
    split: str = field(default="test", metadata={"help": "test or validation"})
    num_beams: int = field(default=20, metadata={"help": "beam width of the constrained search"})
    batch_size: int = field(default=64, metadata={"help": "histories per recommend() call"})
    max_history: Optional[int] = field(default=None, metadata={"help": "interactions per prompt (default: as prepared)"})
    max_cases: Optional[int] = field(default=None, metadata={"help": "evaluate a seeded random subset of cases"})
    max_test_users: Optional[int] = field(default=None, metadata={
        "help": "evaluate only the cases of a seeded random sample of this many users (a huge log: only their rows "
                "are read); applied before max_cases"})
    repeat_slots: int = field(
        default=3, metadata={"help": "also score GAMER with the n most recent history items first (0: skip)"}
    )
    rerank: bool = field(default=True, metadata={
        "help": "also score GAMER+rerank and Repeat+learned: HistoryRerankers fit on the validation split"})
    rerank_cases: int = field(default=1000, metadata={"help": "validation cases the rerankers are fit on (seeded subset)"})
    out: Optional[str] = field(default=None, metadata={"help": "output folder (default: the checkpoint)"})
    seed: int = field(default=0, metadata={"help": "seed of the case subset"})


def subset_cases(cases: Any, limit: int | None, seed: int) -> Any:
    """A seeded random subset of a split's cases (a `datasets.Dataset`), in their order; all of them within the limit."""
    if limit is None or len(cases) <= limit:
        return cases
    return cases.select(sorted(random.Random(seed).sample(range(len(cases)), limit)))


def decode_beams(evaluator: Evaluator, gamer: GamerRecommender, desc: str = "evaluate GAMER") -> tuple[Beams, float]:
    """Every beam of GAMER's constrained search for each of the evaluator's cases, and the seconds it took."""
    start = time.perf_counter()
    generated = evaluator.predict(lambda batch, _: gamer.generate(batch, gamer.num_beams), desc=desc)
    return generated, time.perf_counter() - start


def evaluate_checkpoint(args: EvaluateArguments, progress: bool = True) -> EvaluationReport:
    """GAMER (decoded once, scored plain, history-mixed and reranked), MostPopular, Repeat and Repeat+learned on
    the same cases; the report is also written beside the checkpoint (or to `args.out`) for the model card."""
    out = Path(args.out or args.model)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"out={out} is a file; the report needs a folder ({', '.join(EVAL_FILES)})")
    model, tokenizer = load_checkpoint(args.model, device=default_device())
    prepared = load_prepared(args.data)
    if args.split not in prepared.splits:
        raise ConfigurationError(f"{args.data} has no split {args.split!r}; it has {list(prepared.splits)}")
    cases = subset_cases(sample_users(prepared.splits[args.split], args.max_test_users, args.seed), args.max_cases,
                         args.seed)
    evaluator = Evaluator(cases, prepared.metadata["behaviors"], batch_size=args.batch_size, progress=progress,
                          known_items=distinct_items(prepared.splits["train"]))
    if args.num_beams < evaluator.top_k:
        raise ConfigurationError(f"num_beams={args.num_beams} cannot fill top-{evaluator.top_k} lists: use at least "
                                 f"{evaluator.top_k}")
    max_history = args.max_history or prepared.metadata.get("max_history")
    gamer = GamerRecommender(model, tokenizer, num_beams=args.num_beams, max_history=max_history, on_unknown="skip")
    report = evaluator.report(metadata={
        "checkpoint": str(args.model), "data": str(args.data), "split": args.split, "cases": len(evaluator.cases),
        "users": len({case.user_id for case in evaluator.cases}), "max_test_users": args.max_test_users,
        "num_beams": args.num_beams, "max_history": max_history,
    })
    generated, seconds = decode_beams(evaluator, gamer)  # every beam: the mixer fills from them, the reranker pools them
    report.add(evaluator.score([[item for item, _ in row] for row in generated], "GAMER", seconds))
    if args.repeat_slots:
        mixer = HistoryMixer(repeat_slots=args.repeat_slots)
        mixed = [mixer.mix(row, case, evaluator.top_k) for row, case in zip(generated, evaluator.cases)]
        report.add(evaluator.score(mixed, f"GAMER+repeat{args.repeat_slots}", seconds))
    # Popularity is fit on the histories the cases already show: interactions before the held-out session.
    report.add(evaluator.evaluate(MostPopular().fit(cases), "MostPopular", baseline=True))
    report.add(evaluator.evaluate(Repeat(), "Repeat", baseline=True))
    if args.rerank and args.split != "validation" and "validation" in prepared.splits:
        held_out = subset_cases(prepared.splits["validation"], args.rerank_cases, args.seed)
        _add_reranked(report, evaluator, gamer, held_out, generated, seconds)
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / EVAL_FILES[0])
    report.save_markdown(out / EVAL_FILES[1])
    plot_per_behavior(report, out / EVAL_FILES[2])
    return report


def _add_reranked(report: EvaluationReport, evaluator: Evaluator, gamer: GamerRecommender, held_out: Any,
                  generated: Beams, seconds: float) -> None:
    """GAMER+rerank and its model-free twin Repeat+learned, both fit on validation cases."""
    behaviors = evaluator.behaviors
    popular = MostPopular().fit(held_out)
    try:
        learned = HistoryReranker(behaviors, popular, use_model=False).fit(held_out)
        # The fit's beam search is most of its time: decode it under its own bar, in the evaluator's batches.
        fit_on = Evaluator(held_out, behaviors, batch_size=evaluator.batch_size, progress=evaluator.progress)
        fit_beams, _ = decode_beams(fit_on, gamer, desc="fit reranker on validation")
        gamer.fit_reranker(fit_on.cases, HistoryReranker(behaviors, popular), generated=fit_beams)
    except ValueError as error:  # e.g. no validation target in any pool: nothing to learn from
        logger.warning("skipping GAMER+rerank and Repeat+learned: %s", error)
        return
    start = time.perf_counter()
    reranked = gamer.rerank(evaluator.cases, generated, evaluator.top_k)  # the test beams GAMER's row decoded
    report.add(evaluator.score(reranked, "GAMER+rerank", seconds + time.perf_counter() - start))
    report.add(evaluator.evaluate(learned, "Repeat+learned", baseline=True))
