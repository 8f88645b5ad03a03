"""The evaluation protocol of a trained checkpoint: which models are scored on which cases, and where
the report goes. `gamer-hf evaluate`, the quickstart and the benchmarks call these functions:
`rule_rows` scores the rules, `gamer_rows` one GAMER checkpoint with its blends, and
`evaluate_checkpoint` is both on one checkpoint and its prepared data, written beside it.

GAMER's beams are decoded once per case and reused: the plain row, the history-mixed rows and the
reranked row are cut from the same beams, so their differences are the blend's, not the decoder's.
With `explore`, the beams are also decoded once with the history excluded (GAMER's explore candidates):
scored alone as `GAMER:no-history`, and pooled by the reranker.
The mixer is chosen and the rerankers are fit only on validation cases (never on the split being
scored), with popularity counted on the training rows, so no fitted feature has seen a held-out target.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..checkpoint import EVAL_RESULTS_FILE, default_device, load_checkpoint
from ..data.diagnostics import diagnose
from ..data.prepare import load_prepared
from ..errors import ConfigurationError, OutputExistsError
from .baselines import MostPopular, Repeat
from .cases import EvalCase, as_cases
from .evaluator import Evaluator
from .gamer_recommender import GamerRecommender, beam_items
from .mixing import MIXER_GRID, HistoryMixer, choose_mixer
from .plotting import plot_per_behavior
from .reranking import GATE_GRID, REGULARIZATION_GRID, HistoryReranker
from .results import EvaluationReport, ModelResult
from .user_sample import distinct_items, sample_users

__all__ = ["EVAL_FILES", "NEW_ITEMS", "NO_HISTORY", "PLAIN_BEAMS", "RULES", "EvaluateArguments", "Scored", "decode_beams",
           "evaluate_checkpoint", "gamer_rows", "rule_rows", "subset_cases"]

logger = logging.getLogger(__name__)

EVAL_FILES = (EVAL_RESULTS_FILE, "eval_results.md", "eval_ndcg10.png")  # written beside the checkpoint

Beams = list[list[tuple[str, float]]]
RULES = ("MostPopular", "Repeat", "Repeat+popular", "Repeat+learned")  # what `rule_rows` scores
NO_HISTORY = ":no-history"  # suffix of a row decoded with the user's history items excluded
PLAIN_BEAMS = ":plain-beams"  # suffix of the reranker ablation without the explore beams
NEW_ITEMS = ":new-items"  # suffix of the residual reranker whose columns score GAMER's new items only


@dataclass
class Scored:
    """One row of a report and how it was made (the chosen mixer, the fitted reranker), JSON-ready."""

    result: ModelResult
    details: dict[str, Any] = field(default_factory=dict)


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
    mix: bool = field(default=True, metadata={
        "help": "also score GAMER+mix: the history blend of a small grid that is best on the validation split"})
    rerank: bool = field(default=True, metadata={
        "help": "also score GAMER+rerank and Repeat+learned: HistoryRerankers fit on the validation split"})
    rerank_cases: int = field(default=1000, metadata={
        "help": "validation cases the mixer is chosen and the rerankers are fit on (seeded subset)"})
    out: Optional[str] = field(default=None, metadata={"help": "output folder (default: the checkpoint)"})
    seed: int = field(default=0, metadata={"help": "seed of the case subset"})


def subset_cases(cases: Any, limit: int | None, seed: int) -> Any:
    """A seeded random subset of a split's cases (a `datasets.Dataset`), in their order; all of them within the limit."""
    if limit is None or len(cases) <= limit:
        return cases
    return cases.select(sorted(random.Random(seed).sample(range(len(cases)), limit)))


def decode_beams(evaluator: Evaluator, gamer: GamerRecommender, desc: str = "evaluate GAMER",
                 exclude_history: bool | None = None) -> tuple[Beams, float]:
    """Every beam of GAMER's constrained search for each of the evaluator's cases (`exclude_history`: as
    `GamerRecommender.generate`), and the seconds it took."""
    start = time.perf_counter()
    generated = evaluator.predict(lambda batch, _: gamer.generate(batch, gamer.num_beams, exclude_history), desc=desc)
    return generated, time.perf_counter() - start


def rule_rows(evaluator: Evaluator, popular: MostPopular, validation: Sequence[EvalCase] | None = None,
              names: Sequence[str] = RULES, regularization: float | Sequence[float] = REGULARIZATION_GRID,
              gate: bool | Sequence[bool] = GATE_GRID) -> dict[str, Scored]:
    """The rules of `names` on the evaluator's cases: MostPopular (`popular`, fit on training rows), Repeat, Repeat
    filled with `popular`, and Repeat+learned (a model-free HistoryReranker fit on `validation`, its
    `regularization` and `gate` cross-validated there as GAMER+rerank's are; skipped, with a warning, without
    validation cases or when they give it nothing to learn)."""
    unknown = sorted(set(names) - set(RULES))
    if unknown:
        raise ValueError(f"unknown rules {unknown}; choose from {list(RULES)}")
    filled = Repeat(fill_with_popular=True)
    filled.popular = popular
    rules: dict[str, Any] = {"MostPopular": popular, "Repeat": Repeat(), "Repeat+popular": filled}
    out = {name: Scored(evaluator.evaluate(rules[name], name, baseline=True)) for name in names if name in rules}
    if "Repeat+learned" in names and validation is not None:
        reranker = HistoryReranker(evaluator.behaviors, popular, use_model=False, popular_pool=evaluator.top_k,
                                   regularization=regularization, gate=gate)
        try:
            reranker.fit(validation)
        except ValueError as error:  # e.g. no validation target in any pool: nothing to learn from
            logger.warning("skipping Repeat+learned: %s", error)
        else:
            out["Repeat+learned"] = Scored(evaluator.evaluate(reranker, "Repeat+learned", baseline=True),
                                           {"reranker": reranker.to_dict()})
    return out


def gamer_rows(evaluator: Evaluator, gamer: GamerRecommender, name: str = "GAMER", *, baseline: bool = False,
               validation: Sequence[EvalCase] | None = None, popular: MostPopular | None = None,
               mixers: Sequence[HistoryMixer] = MIXER_GRID, repeat_slots: int = 0,
               rerank: bool = True, explore: bool = True, rerank_ablation: bool = False,
               regularization: float | Sequence[float] = REGULARIZATION_GRID,
               gate: bool | Sequence[bool] = GATE_GRID, residual: bool = True,
               rerank_new_items: bool = False) -> dict[str, Scored]:
    """One GAMER checkpoint on the evaluator's cases, its beams decoded once: `name`; `name`+repeatN (the N most
    recent history items first) when `repeat_slots`; with `explore`, `name`:no-history (beams decoded with the
    history excluded); and with `validation` cases, whose beams are decoded once too, `name`+mix (the best of
    `mixers` on them, when any) and `name`+rerank (a HistoryReranker over beams, explore beams, history and
    `popular` items fit on them, when `rerank`; `rerank_ablation` adds `name`+rerank:plain-beams, the same without
    the explore beams, and `rerank_new_items` `name`+rerank:new-items, the residual with GAMER's columns on the items
    outside the rule's own pool only (`residual_items="new"`); every reranker chooses its `regularization` and whether to `gate` its features by the case
    by cross-validation on `validation` when given a grid; with `residual`, each is fit on top of the cross-fitted
    Repeat+learned, so the rule alone is one of the settings it chooses from). `baseline` marks the plain rows
    references (TIGER)."""
    if gamer.num_beams < evaluator.top_k:
        raise ValueError(f"num_beams={gamer.num_beams} cannot fill top-{evaluator.top_k} lists: use at least "
                         f"{evaluator.top_k}")
    generated, seconds = decode_beams(evaluator, gamer, f"evaluate {name}")  # every beam: the blends use them all
    out = {name: Scored(evaluator.score(beam_items(generated), name, seconds, baseline))}
    explored = None
    if explore:
        explored, explore_seconds = decode_beams(evaluator, gamer, f"evaluate {name}{NO_HISTORY}", exclude_history=True)
        out[name + NO_HISTORY] = Scored(evaluator.score(beam_items(explored), name + NO_HISTORY, explore_seconds,
                                                        baseline))
    if repeat_slots:
        mixer = HistoryMixer(repeat_slots=repeat_slots)
        mixed = [mixer.mix(row, case, evaluator.top_k) for row, case in zip(generated, evaluator.cases)]
        out[f"{name}+repeat{repeat_slots}"] = Scored(evaluator.score(mixed, f"{name}+repeat{repeat_slots}", seconds),
                                                     {"mixer": _mixer_dict(mixer)})
    if validation is None or not (mixers or rerank):
        return out
    # The validation decoding is most of the blends' time: under its own bar, in the evaluator's batches.
    held_out = Evaluator(validation, evaluator.behaviors, evaluator.k_values, batch_size=evaluator.batch_size,
                         progress=evaluator.progress)
    held_out_beams, _ = decode_beams(held_out, gamer, "validation: choose mixer, fit reranker")
    held_out_explored = decode_beams(held_out, gamer, "validation: explore beams", exclude_history=True)[0] if (
        explore and rerank) else None
    if mixers:
        mixer, score, candidates = choose_mixer(held_out, held_out_beams, mixers)
        mixed = [mixer.mix(row, case, evaluator.top_k) for row, case in zip(generated, evaluator.cases)]
        out[f"{name}+mix"] = Scored(evaluator.score(mixed, f"{name}+mix", seconds), {
            "mixer": _mixer_dict(mixer), "validation_ndcg10": score,
            "candidates": [[_mixer_dict(m), s] for m, s in candidates]})
    if not rerank:
        return out
    rerankers = {f"{name}+rerank": HistoryReranker(evaluator.behaviors, popular, popular_pool=evaluator.top_k,
                                                   explore=explore, regularization=regularization, gate=gate,
                                                   residual=residual)}
    if residual and rerank_new_items:
        rerankers[f"{name}+rerank{NEW_ITEMS}"] = HistoryReranker(
            evaluator.behaviors, popular, popular_pool=evaluator.top_k, explore=explore, regularization=regularization,
            gate=gate, residual=True, residual_items="new")
    if explore and rerank_ablation:
        rerankers[f"{name}+rerank{PLAIN_BEAMS}"] = HistoryReranker(
            evaluator.behaviors, popular, popular_pool=evaluator.top_k, explore=False, regularization=regularization,
            gate=gate, residual=residual)
    # The first reranker's pools hold every other's: GAMER scores each pooled item once, for all of them.
    widest = rerankers[f"{name}+rerank"]
    held_out_scores = gamer.pool_scores(held_out.cases, held_out_beams, widest, held_out_explored)
    test_scores, scoring_seconds = None, 0.0
    for row, reranker in rerankers.items():
        try:
            reranker.fit(held_out.cases, beam_items(held_out_beams), held_out_scores,
                         beam_items(held_out_explored) if reranker.explore else None)
        except ValueError as error:  # e.g. no validation target in any pool: nothing to learn from
            logger.warning("skipping %s: %s", row, error)
            continue
        start = time.perf_counter()
        if test_scores is None:  # the beams the plain rows decoded
            test_scores = gamer.pool_scores(evaluator.cases, generated, widest, explored)
            scoring_seconds = time.perf_counter() - start
            start = time.perf_counter()
        reranked = reranker.rank(evaluator.cases, evaluator.top_k, beam_items(generated), test_scores,
                                 beam_items(explored) if reranker.explore else None)
        spent = seconds + (explore_seconds if reranker.explore else 0.0) + scoring_seconds + time.perf_counter() - start
        out[row] = Scored(evaluator.score(reranked, row, spent), {"reranker": reranker.to_dict()})
    return out


def _mixer_dict(mixer: HistoryMixer) -> dict[str, Any]:
    return asdict(mixer) | {"behaviors": None if mixer.behaviors is None else sorted(mixer.behaviors)}


def evaluate_checkpoint(args: EvaluateArguments, progress: bool = True) -> EvaluationReport:
    """GAMER (decoded once, scored plain, history-mixed and reranked), MostPopular, Repeat, Repeat+popular and
    Repeat+learned on the same cases; the report is also written beside the checkpoint (or to `args.out`) for the
    model card."""
    out = Path(args.out or args.model)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"out={out} is a file; the report needs a folder ({', '.join(EVAL_FILES)})")
    model, tokenizer = load_checkpoint(args.model, device=default_device())
    prepared = load_prepared(args.data)
    if args.split not in prepared.splits:
        raise ConfigurationError(f"{args.data} has no split {args.split!r}; it has {list(prepared.splits)}")
    data_report = diagnose(prepared.splits, prepared.metadata)  # warned here, recorded for the model card
    for warning in data_report.warnings:
        logger.warning("%s: %s", args.data, warning.message)
    cases = subset_cases(sample_users(prepared.splits[args.split], args.max_test_users, args.seed), args.max_cases,
                         args.seed)
    popular = MostPopular().fit(prepared.splits["train"])  # also the training items: the cold slice of the cases
    evaluator = Evaluator(cases, prepared.metadata["behaviors"], batch_size=args.batch_size, progress=progress,
                          known_items=popular.seen(distinct_items(cases, "target_items")))
    if args.num_beams < evaluator.top_k:
        raise ConfigurationError(f"num_beams={args.num_beams} cannot fill top-{evaluator.top_k} lists: use at least "
                                 f"{evaluator.top_k}")
    max_history = args.max_history or prepared.metadata.get("max_history")
    gamer = GamerRecommender(model, tokenizer, num_beams=args.num_beams, max_history=max_history, on_unknown="skip")
    report = evaluator.report(metadata={
        "checkpoint": str(args.model), "data": str(args.data), "split": args.split, "cases": len(evaluator.cases),
        "users": len({case.user_id for case in evaluator.cases}), "max_test_users": args.max_test_users,
        "num_beams": args.num_beams, "max_history": max_history, "data_report": data_report.to_dict(),
    })
    validation = None
    if (args.mix or args.rerank) and args.split != "validation" and "validation" in prepared.splits:
        if data_report.lacks_target_cases("validation"):  # a fit on other behaviors' cases would pass silently
            logger.warning("skipping GAMER+mix, GAMER+rerank and Repeat+learned: the validation split has no case of "
                           "the target behavior %r to choose or fit them on", data_report.target_behavior)
        else:
            validation = as_cases(subset_cases(prepared.splits["validation"], args.rerank_cases, args.seed))
    rows = gamer_rows(evaluator, gamer, validation=validation, popular=popular, mixers=MIXER_GRID if args.mix else (),
                      repeat_slots=args.repeat_slots, rerank=args.rerank)
    rows |= rule_rows(evaluator, popular, validation if args.rerank else None)
    for scored in rows.values():
        report.add(scored.result)
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / EVAL_FILES[0])
    report.save_markdown(out / EVAL_FILES[1])
    plot_per_behavior(report, out / EVAL_FILES[2])
    return report
