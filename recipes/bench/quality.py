"""Quality benchmark: every model on the same splits, test cases and budget; HR@10 / NDCG@10 over seeds.

Models (names as in the tables):
    MostPopular, Repeat                  rule baselines (gamer_hf.evaluation)
    Repeat+popular                       Repeat with its empty slots filled by MostPopular (the rule that
                                         GAMER+mix's fill must beat)
    Repeat+learned                       a HistoryReranker without model scores: history and popular items
                                         ranked by a logistic regression fit on validation cases (recency,
                                         counts, behavior levels, popularity); the baseline for GAMER+rerank
    SASRec, SASRec+behavior              learned item-id baselines (gamer_hf.baselines)
    TIGER                                GAMER with every GAMER component off (ablation "tiger"), no augmentation
    GAMER                                the full model on augmented training data
    GAMER-noaug                          the full model, data prepared with augment_copies=0
    GAMER-nocross                        augmented data, cross-level layers off (ablation "no_cross_level")
    GAMER+mix                            GAMER's generated lists blended with the user's recent items by a
                                         HistoryMixer chosen on validation cases (no extra training)
    GAMER+rerank                         the same reranker with GAMER's scores added: GAMER's beams, history and
                                         popular items pooled, GAMER's log-probability of each (teacher-forced
                                         for items outside the beams) as features; learns when users return. GAMER's
                                         beams decoded with the history excluded (its explore candidates) join the
                                         pool, with their rank as a feature; fit on top of Repeat+learned
                                         (residual: the rule's cross-fitted logit a fixed offset, GAMER's columns
                                         shrunk; "the rule alone" and GAMER's model and explore columns alone
                                         among the cross-validated settings)
    GAMER+rerank:plain-beams             the same reranker without GAMER's explore beams (the previous features:
                                         the ablation of the explore beams, fit and scored on the same beams)
    GAMER+rerank:new-items               (only with --models) the residual with GAMER's columns on the items outside
                                         the rule's own pool only: the rule's items keep its logit, GAMER's new
                                         items get their own log-odds (pre-registered in session 10; same beams)
    SASRec:no-history, ...:no-history    SASRec, SASRec+behavior, TIGER and GAMER with the user's history items
                                         excluded from the list (GAMER and TIGER decode with exclude_history; SASRec
                                         through WithoutHistory): the explore slice compared on equal terms
    SASRec:ndcg, SASRec+behavior:ndcg    (only with --models) the epoch selected by validation NDCG@10
    GAMER-noaug:last                     (only with --models) GAMER-noaug without early stopping, last epoch
    GAMER-reg                            (only with --models) GAMER with stronger regularization (TRAINING_OVERRIDES:
                                         dropout 0.3 of every kind, AdamW weight decay 0.1; pre-registered in
                                         session 15: does GAMER overfit the small samples?)
    GAMER-explore                        (only with --models) GAMER trained without scoring repeats (score_repeats
                                         false: the codes of an item its sequence already holds are not in the
                                         loss); its :no-history row is the explore slice's (session 16 screening)
    GAMER-explore-nhsel                  (only with --models) GAMER-explore with its epoch selected on validation
                                         NDCG@10 of the decoding it is used with, the history excluded
                                         (ranking_exclude_history; session 17)
    SASRec-explore                       (only with --models) SASRec trained the same way (no loss on a next item
                                         its sequence holds): GAMER-explore's learned baseline, with its
                                         :no-history row

Protocol: retailrocket_cml and taobao_cml_partial session-wise (last session test, previous one
validation), retail_beh_mbht leave-one-out on buy. Every learned model gets the same budget: at most
`epochs` epochs over its training rows, selection and early stopping (patience) on validation NDCG@10 of
the model's own ranking (the budget's `select_by`, "ndcg"; "loss" for the validation loss), the best
epoch restored; no wall-clock cap, so a loaded machine changes how long a run takes, not what it computes.
The scoring is gamer_hf.evaluation's (`rule_rows`, `gamer_rows`: the protocol of `gamer-hf evaluate`);
this script prepares the data, trains the models and tabulates. Every table splits the target-behavior
cases into repeat / explore / cold slices and gives each GAMER row's difference to the best baseline
(rules, SASRec, TIGER) with a 95% paired bootstrap over the test cases. Users, validation cases and test cases are
subsampled with a fixed data seed (the same for every model and seed); the seeds vary model
initialisation and data order (semantic IDs are built once per dataset). Semantic-ID collisions: both tokenizers
are built, last-level codes reassigned (where no prefix is full) and an extra disambiguation level appended; each
model family (GAMER with its variants and blends; TIGER) trains seed 0 on each and keeps the one with the higher
validation NDCG@10 (COLLISION_RULE), recorded with both figures and kept by --resume. Results are written after
every model, so an interrupted run continues with --resume. A GAMER variant whose output folder holds a finished
run with the same training arguments is scored again without training (e.g. `--test-cases all` on the checkpoints
of a 500-case run); the record says `reused_checkpoint`. Every row also records the share of its top-10 slots that
hold history items, per slice (`history_share@10`; the tables show it on explore cases). The mixer and the
rerankers (Repeat+learned, GAMER+rerank) are fit on `mixer_cases` validation cases drawn from every validation case
of the sampled users, each reranker's regularization and whether it gates its features by the case (GATE_GRID:
GAMER's beam mass on history items, the history's repeat rate and length) chosen there by 5-fold cross-validation
(REGULARIZATION_GRID); a resumed run refits those rows when their fit cases or that grid change. With several seeds, the tables also pool them: a
paired bootstrap over the test cases, each resampled with all its seeds (`seed_pooled_differences`).

    nice -n 10 python recipes/bench/quality.py --datasets retailrocket_cml --seeds 0 1 2
    python recipes/bench/quality.py --budget quick          # minutes: smoke test of the whole pipeline
    nice -n 10 python recipes/bench/quality.py --budget cpu5k --resume   # issue 16's CPU bench (5,000 users)
    python recipes/bench/quality.py --budget full           # reference settings, for a GPU
    python recipes/bench/quality.py --epochs 3 --test-cases all --resume --out runs/p4   # every test case of the sample
    python recipes/bench/quality.py --budget cpu5k --seeds 1 --out runs/seed1 --choices-from runs/seed0/quality.json \
        --work-dir runs/seed1_work --resume   # a seed beside seed 0's run, reusing its collision choices
    python recipes/bench/quality.py --merge runs/seed0/quality.json runs/seed1/quality.json --out runs/seeds
    python recipes/bench/quality.py --epochs 15 --out recipes/bench/results/budget_study \
        --work-dir runs/bench_quality_long --datasets retail_beh_mbht --seeds 0   # is it the training budget?

Data: --data-dir or $GAMER_HF_DATA_DIR (folders events.csv.gz + meta.json). Outputs: quality.json,
quality.md and quality.png in --out (default recipes/bench/results).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from transformers.utils import logging as hf_logging

from gamer_hf.baselines import SASRecRecommender, TrainingSettings
from gamer_hf.checkpoint import load_checkpoint, sha256_of
from gamer_hf.data import PreparedData, load_prepared, prepare
from gamer_hf.evaluation import (
    ALL_CASES,
    EXPLORE,
    GATE_GRID,
    MERGED,
    NEW_ITEMS,
    NO_HISTORY,
    PLAIN_BEAMS,
    RULES,
    EvalCase,
    EvaluationReport,
    Evaluator,
    GamerRecommender,
    MostPopular,
    ModelResult,
    Scored,
    as_cases,
    gamer_rows,
    items_seen,
    rule_rows,
    history_share,
    seed_pooled_differences,
    slice_mask,
    subset_cases,
    WithoutHistory,
)
from gamer_hf.errors import ConfigurationError, exit_on_user_error
from gamer_hf.files import atomic_output, read_json
from gamer_hf.modeling.tokenization_gamer import ITEM_INDEX_FILE, LEGACY_ITEM_INDEX_FILE
from gamer_hf.semantic_ids import REPORT_FILENAME, SemanticIdArguments, build_tokenizer
from gamer_hf.training import CHECKPOINTS_SUBDIR, TRAINING_INFO_FILE, TrainArguments, list_checkpoints, train

DATASETS = {"retailrocket_cml": "session", "taobao_cml_partial": "session", "retail_beh_mbht": "loo"}
GAMER_VARIANTS = {  # name -> (ablation, trained on augmented data)
    "TIGER": ("tiger", False),
    "GAMER": ("none", True),
    "GAMER-noaug": ("none", False),
    "GAMER-nocross": ("no_cross_level", True),
    "GAMER-reg": ("none", True),
    "GAMER-explore": ("none", True),
    "GAMER-explore-nhsel": ("none", True),
}
# Not run by default: GAMER variants trained with these TrainArguments overrides (the preset's dropout is 0.1, the
# training default weight decay 0.01, repeats scored).
TRAINING_OVERRIDES = {"GAMER-reg": {"dropout": 0.3, "weight_decay": 0.1}, "GAMER-explore": {"score_repeats": False},
                      "GAMER-explore-nhsel": {"score_repeats": False, "ranking_exclude_history": True}}
BLENDS = ["GAMER+mix", "GAMER+rerank"]  # made from the trained GAMER's beams, no extra GAMER training
FITTED = ["Repeat+learned", *BLENDS]  # fit on validation cases: redone by --resume when those cases change
MODELS = [*RULES,  # the rules: no GAMER, no seed, scored once per dataset
 "SASRec", "SASRec+behavior", *(v for v in GAMER_VARIANTS if v not in TRAINING_OVERRIDES), *BLENDS]
# Not run by default: SASRec without loss on repeats (TrainingSettings.score_repeats), beside GAMER-explore.
SASREC_EXPLORE = "SASRec-explore"
BASELINES = [*RULES, "SASRec", "SASRec+behavior", "TIGER", SASREC_EXPLORE]  # what GAMER is compared with
# Not run by default: SASRec with the epoch always chosen by validation NDCG@10 (the default of the budgets too,
# `select_by`; with select_by="loss" these rows show what the selection rule costs).
NDCG_SELECTED = ["SASRec:ndcg", "SASRec+behavior:ndcg"]
# Likewise: GAMER-noaug trained for the whole budget without
# early stopping and scored at its last epoch (the Trainer restores the lowest-loss checkpoint; the last one
# is kept beside it).
LAST_EPOCH = ["GAMER-noaug:last"]
# Likewise: GAMER+rerank with GAMER's columns on its new items only (residual_items="new"), fit and scored beside
# GAMER+rerank on the same beams.
RERANK_NEW_ITEMS = f"GAMER+rerank{NEW_ITEMS}"
DIAGNOSTICS = NDCG_SELECTED + LAST_EPOCH + [RERANK_NEW_ITEMS, *TRAINING_OVERRIDES, SASREC_EXPLORE]
# Scored beside their model, never trained on their own: the learned models' lists with the history items excluded
# (the explore slice on equal terms) and GAMER+rerank without GAMER's explore beams (the ablation of those features).
SIDE_ROWS = [*(f"{m}{NO_HISTORY}" for m in ("SASRec", "SASRec+behavior", SASREC_EXPLORE, "TIGER", "GAMER",
                                           *TRAINING_OVERRIDES)),
             f"GAMER+rerank{PLAIN_BEAMS}"]
HEADLINE = ("HR@10", "NDCG@10")
# Semantic-ID collision handling: both tokenizers are built (reassign only where no prefix is full), and each model
# family keeps the one its own validation prefers. Pre-registered before the eighth pass (RESULTS.md).
COLLISIONS = ("reassign", "append")  # in tie order: reassign, the handling before the choice existed
CHOICE_SEED = 0
COLLISION_RULE = ("each model family (GAMER: its variants and blends follow it; TIGER) trains seed 0 on each tokenizer "
                  "and keeps the one with the higher best validation NDCG@10 of the ranking-selection callback (the fixed "
                  "validation subset); ties: reassign")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Budget:
    """Everything that sizes a run; stated in the outputs next to the numbers it produced."""

    name: str
    preset: str
    max_history: int
    max_users: int | None  # seeded user subsample per dataset (None: all users)
    max_validation_cases: int | None
    max_test_cases: int | None
    # Validation cases on which GAMER+mix picks its HistoryMixer and the rerankers are fit (their regularization
    # cross-validated there), drawn from every validation case of the sampled users (`fit_split`), not only the
    # `max_validation_cases` that early stopping reads.
    mixer_cases: int
    epochs: int
    patience: int
    batch_size: int
    gamer_learning_rate: float
    sasrec_learning_rate: float
    sid_levels: int
    sid_codebook: int
    augment_copies: int
    num_beams: int
    select_by: str = "ndcg"  # checkpoint / epoch selection of GAMER, TIGER and SASRec: validation "ndcg" or "loss"
    fit_split: str = "validation-all"  # where the mixer_cases come from (the fourth pass drew them from the capped split)

    def selection(self) -> dict[str, Any]:
        """GAMER's TrainArguments for the epoch selection: the ranking pass's cases and beams only with
        select_by="ndcg" (TrainArguments refuses them otherwise)."""
        if self.select_by != "ndcg":
            return {"select_by": self.select_by}
        return {"select_by": "ndcg", "ranking_cases": self.max_validation_cases or 500, "ranking_beams": self.num_beams}


def _budget(name: str, preset: str, max_history: int, users: int | None, validation: int | None, test: int | None,
            mixer: int, epochs: int, patience: int, batch_size: int, gamer_lr: float, levels: int, codebook: int,
            beams: int) -> Budget:
    return Budget(name, preset, max_history, users, validation, test, mixer, epochs, patience, batch_size, gamer_lr,
                  1e-3, levels, codebook, augment_copies=2, num_beams=beams)


# Step budgets only (epochs, patience): a wall-clock cap on a shared machine gives each run a share of the compute
# that depends on the neighbours, not on the model.
BUDGETS = {
    "quick": _budget("quick", "tiny", 10, 300, 60, 60, 30, 1, 1, 64, 2e-3, 3, 32, 10),
    "small": _budget("small", "small", 20, 2500, 300, 500, 1000, 6, 2, 64, 2e-3, 3, 64, 20),
    # issue 16's CPU bench: >= 5,000 sampled users and 1,000 test cases per dataset, every behavior.
    "cpu5k": _budget("cpu5k", "small", 20, 5000, 500, 1000, 1000, 6, 2, 64, 2e-3, 3, 64, 20),
    "full": _budget("full", "base", 100, None, None, None, 1000, 200, 20, 256, 5e-4, 4, 256, 20),
}


# ----------------------------------------------------------------------------------------------- data


def subsample_users(source: Path, out: Path, max_users: int | None, seed: int) -> Path:
    """A copy of the dataset folder holding a seeded random subset of its users (the source when all fit)."""
    events = pd.read_csv(source / "events.csv.gz", dtype={"user_id": str, "item_id": str, "behavior": str})
    users = events["user_id"].unique()
    if max_users is None or len(users) <= max_users:
        return source
    if (out / "events.csv.gz").is_file():
        return out
    keep = set(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".events.csv.gz.tmp"  # gzip records the name and the time: both fixed, the subsample is byte-identical
    events[events["user_id"].isin(keep)].to_csv(tmp, index=False,
                                                compression={"method": "gzip", "compresslevel": 1, "mtime": 0})
    os.replace(tmp, out / "events.csv.gz")
    shutil.copyfile(source / "meta.json", out / "meta.json")
    return out


@dataclass
class DatasetSetup:
    """One dataset, prepared once for every model and seed."""

    name: str
    plain: Path  # prepared with augment_copies=0
    augmented: Path
    tokenizers: dict[str, Path]  # collision handling -> tokenizer, in COLLISIONS order; without the ones not built
    unbuilt: dict[str, str]  # collision handling -> why there is no tokenizer for it
    behaviors: dict[str, int]
    test_cases: list[EvalCase]
    mixer_cases: list[EvalCase]
    popular: MostPopular  # fit on the training rows: popularity features and fills
    stats: dict[str, Any]
    known_items: set[str] = field(default_factory=set)  # items of the training rows: the cold slice
    collisions: dict[str, str] = field(default_factory=dict)  # model family -> the handling its validation chose

    def tokenizer(self, variant: str, collisions: str | None = None) -> tuple[str, Path]:
        """The collision handling (given, else the one chosen for the variant's family) and its tokenizer."""
        handling = collisions or self.collisions[family(variant)]
        return handling, self.tokenizers[handling]


def _prepare(events: Path, protocol: str, out: Path, budget: Budget, copies: int, data_seed: int) -> PreparedData:
    if (out / "metadata.json").is_file():
        return load_prepared(out)
    prepared = prepare(events, protocol=protocol, max_history=budget.max_history, augment_copies=copies,
                       seed=data_seed, progress=False)
    # Early stopping reads the whole validation split every epoch: keep a seeded subset of it.
    prepared.splits["validation"] = subset_cases(prepared.splits["validation"], budget.max_validation_cases, data_seed)
    prepared.save(out)
    return load_prepared(out)


def fit_cases(events: Path, protocol: str, root: Path, budget: Budget, data_seed: int,
              plain: PreparedData) -> list[EvalCase]:
    """`budget.mixer_cases` validation cases (seeded) from every validation case of the sampled users: the split is
    prepared again without the cap that keeps early stopping cheap (same users, seed and test cases)."""
    folder = root / "prepared_validation_all"
    if not (folder / "metadata.json").is_file():
        prepare(events, protocol=protocol, max_history=budget.max_history, augment_copies=0, seed=data_seed,
                progress=False).save(folder)
    full = load_prepared(folder)
    if full.splits["test"]["user_id"] != plain.splits["test"]["user_id"]:
        raise RuntimeError(f"{root.name}: the test cases of the uncapped preparation differ from the bench's")
    return as_cases(subset_cases(full.splits["validation"], budget.mixer_cases, data_seed + 1))


def target_diagnostics(prepared: PreparedData, cases: Sequence[EvalCase]) -> dict[str, float]:
    """How learnable the test targets are: seen in training at all, and already in the user's prompt."""
    seen = {str(item) for items in prepared.splits["train"]["items"] for item in items}
    target = prepared.metadata["target_behavior"]
    out: dict[str, float] = {}
    for label, chosen in (("all", list(cases)), ("target", [c for c in cases if c.target_behavior == target])):
        if not chosen:
            continue
        targets = [item for case in chosen for item in case.target_items]
        out[f"{label}_targets_seen_in_training"] = round(sum(i in seen for i in targets) / len(targets), 4)
        out[f"{label}_cases_with_target_in_prompt"] = round(
            sum(bool(set(c.target_items) & set(c.history_items)) for c in chosen) / len(chosen), 4)
    return out


def family(variant: str) -> str:
    """The model family whose validation chooses a GAMER variant's tokenizer: TIGER chooses for itself, every other
    variant (and the blends) follows GAMER."""
    return "TIGER" if variant.partition(":")[0] == "TIGER" else "GAMER"


def choose_collisions(figures: Mapping[str, float]) -> str:
    """The collision handling with the highest validation NDCG@10 in `figures` (handling -> figure); ties go to the
    first in COLLISIONS order (reassign)."""
    if not figures:
        raise ValueError("no collision handling to choose from: give at least one validation figure")
    return max(sorted(figures, key=COLLISIONS.index), key=lambda handling: figures[handling])


def collision_choice(candidates: Sequence[str], validate: Callable[[str], float], unbuilt: Mapping[str, str],
                     stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One family's choice: `validate(handling)` trains seed 0 on that tokenizer and returns its best validation
    NDCG@10. A `stored` choice over the same candidates is kept as it is (--resume); one candidate needs no
    training."""
    if stored and list(stored.get("validation_ndcg10", {})) == list(candidates):
        return dict(stored)
    figures = {handling: validate(handling) for handling in candidates} if len(candidates) > 1 else {}
    return {"validation_ndcg10": figures, "chosen": choose_collisions(figures) if figures else candidates[0],
            "seed": CHOICE_SEED, "unbuilt": dict(unbuilt), "rule": COLLISION_RULE}


def _semantic_id_summary(tokenizer: Path) -> dict[str, Any]:
    """Codebooks, collisions and how many items had no training signal (random fallback embeddings)."""
    written = read_json(tokenizer / REPORT_FILENAME)
    report = written["report"]
    return {"codebook_sizes": report["codebook_sizes"], "collision_rate": report["collision_rate"],
            "collision_handling": report["collision_handling"], "embedding": written.get("embedding")}


def setup_dataset(name: str, data_dir: Path, work: Path, budget: Budget, data_seed: int) -> DatasetSetup:
    """Subsample, prepare (plain and augmented, same held-out cases), build semantic IDs, pick test cases."""
    root = work / name
    protocol = DATASETS[name]
    start = time.perf_counter()
    events = subsample_users(data_dir / name, root / "events", budget.max_users, data_seed)
    plain = _prepare(events, protocol, root / "prepared", budget, 0, data_seed)
    augmented = _prepare(events, protocol, root / "prepared_aug", budget, budget.augment_copies, data_seed)
    for split in ("validation", "test"):
        if plain.splits[split]["user_id"] != augmented.splits[split]["user_id"]:
            raise RuntimeError(f"{name}: the {split} cases of the plain and augmented preparations differ")
    tokenizers, unbuilt = build_tokenizers(root, budget, data_seed)
    timing = root / "setup_seconds.json"  # measured when the setup was built; a resumed run reuses it
    if not timing.is_file():
        with atomic_output(timing) as temporary:
            temporary.write_text(json.dumps(round(time.perf_counter() - start, 1)))
    test = as_cases(subset_cases(plain.splits["test"], budget.max_test_cases, data_seed))
    mixer = fit_cases(events, protocol, root, budget, data_seed, plain)
    stats = {
        "protocol": protocol, "users": plain.metadata["num_users"], "items": plain.metadata["num_items"],
        "events": plain.metadata["num_events"], "train_rows": len(plain.splits["train"]),
        "train_rows_augmented": len(augmented.splits["train"]), "validation_cases": len(plain.splits["validation"]),
        "test_cases_total": plain.metadata["splits"]["test"]["cases"], "test_cases_used": len(test),
        "semantic_ids": {handling: _semantic_id_summary(folder) for handling, folder in tokenizers.items()},
        "semantic_ids_unbuilt": unbuilt, "setup_seconds": read_json(timing),
        **target_diagnostics(plain, test),
    }
    return DatasetSetup(name, root / "prepared", root / "prepared_aug", tokenizers, unbuilt, dict(plain.metadata["behaviors"]),
                        test, mixer, MostPopular().fit(plain.splits["train"]), stats,
                        items_seen(plain.splits["train"]["items"]))


def build_tokenizers(root: Path, budget: Budget, data_seed: int) -> tuple[dict[str, Path], dict[str, str]]:
    """The semantic IDs with each collision handling (same embeddings and codes before handling), built once and
    kept in `root`: reassigned last-level codes (K tokens per item; fails where a prefix is full) and an appended
    disambiguation level. Returns the tokenizers in COLLISIONS order and why a handling has none (its reassign
    failed, or no item collided and append would repeat reassign's IDs)."""
    tokenizers, unbuilt = {}, {}
    for handling in COLLISIONS:
        folder, failed = root / f"tokenizer-{handling}", root / f"tokenizer-{handling}.failed"
        if not (folder / "tokenizer_config.json").is_file() and not failed.is_file():
            try:
                build_tokenizer(SemanticIdArguments(
                    data=str(root / "prepared"), out=str(folder), method="rqkmeans", levels=budget.sid_levels,
                    codebook_size=budget.sid_codebook, collisions=handling, seed=data_seed, overwrite=True,
                    progress=False))  # the data steps show no bars either (prepare above)
            except ValueError as error:  # reassign: a prefix has no free last-level code
                with atomic_output(failed) as temporary:
                    temporary.write_text(f"{error}\n")
        if failed.is_file():
            unbuilt[handling] = failed.read_text().strip()
        elif tokenizers and read_json(folder / REPORT_FILENAME)["report"]["collision_handling"] == "none":
            unbuilt[handling] = "no collisions: the same IDs as " + next(iter(tokenizers))
        else:
            tokenizers[handling] = folder
    return tokenizers, unbuilt


# --------------------------------------------------------------------------------------------- models


class SharingEvaluator(Evaluator):
    """The bench's Evaluator: it also keeps, per scored row, the share of the top-10 slots holding history items
    on each slice's target cases (a model that fills its list with history items wastes it on explore cases)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shares: dict[str, dict[str, float]] = {}

    def score(self, rankings: Sequence[Sequence[str]], name: str, seconds: float | None = None,
              baseline: bool = False) -> ModelResult:
        share = history_share(rankings, self.cases, self.headline_k)
        target = np.array([b == self.target_behavior for b in self.case_behaviors])
        self.shares[name] = {label: round(float(share[target & mask].mean()), 4) for label, mask in
                             [(ALL_CASES, np.ones_like(target)), *((n, slice_mask(self.case_slices, n))
                                                                   for n in self.slice_names)] if (target & mask).any()}
        return super().score(rankings, name, seconds, baseline)

    def attach_shares(self, records: dict[str, dict[str, Any]]) -> None:
        """Write the history shares into the results file's records of the rows scored so far."""
        for name, record in records.items():
            if name in self.shares:
                record["history_share@10"] = self.shares[name]



def run_rules(setup: DatasetSetup, evaluator: Evaluator) -> dict[str, dict[str, Any]]:
    """The rules, deterministic, scored once per dataset (gamer_hf.evaluation.rule_rows)."""
    return _records(rule_rows(evaluator, setup.popular, setup.mixer_cases))


def _records(rows: dict[str, Scored], **info: Any) -> dict[str, dict[str, Any]]:
    """The results file's records: the result, how the row was made, and what training did."""
    return {name: {"result": row.result.to_dict(), **info, **row.details} for name, row in rows.items()}


def run_sasrec(setup: DatasetSetup, evaluator: Evaluator, budget: Budget, seed: int, name: str,
               progress: bool, device: str = "cpu") -> dict[str, dict[str, Any]]:
    """SASRec, SASRec+behavior or SASRec-explore (name), epoch selected as the budget says, or by NDCG@10 for the
    ':ndcg' names; scored as trained and (SIDE_ROWS) with the history items excluded (name:no-history)."""
    base, _, select_by = name.partition(":")
    settings = TrainingSettings(epochs=budget.epochs, batch_size=budget.batch_size,
                                learning_rate=budget.sasrec_learning_rate, patience=budget.patience,
                                seed=seed, progress=progress, select_by=select_by or budget.select_by, device=device,
                                score_repeats=base != SASREC_EXPLORE)
    model = SASRecRecommender.fit_prepared(load_prepared(setup.plain), use_behaviors=base == "SASRec+behavior",
                                           settings=settings)
    fit = model.fit_result
    info = {"train_seconds": round(fit.seconds, 1), "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
            "stop_reason": fit.stop_reason, "selected_by": settings.select_by, "best_metric": fit.best_metric,
            "validation": fit.history}
    rows = {name: model} | ({name + NO_HISTORY: WithoutHistory(model)} if name + NO_HISTORY in SIDE_ROWS else {})
    return {row: {"result": evaluator.evaluate(recommender, row, baseline=base in BASELINES).to_dict(), **info}
            for row, recommender in rows.items()}


def _gamer_dir(work: Path, setup: DatasetSetup, seed: int, variant: str, collisions: str) -> Path:
    return work / setup.name / f"seed{seed}" / f"{variant.replace(':', '-')}-{collisions}"


def train_gamer(setup: DatasetSetup, budget: Budget, seed: int, variant: str, work: Path, device: str,
                progress: bool, collisions: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Train one GAMER variant through gamer_hf.training on the tokenizer of `collisions` (default: the one chosen
    for its family); returns the checkpoint to score and what training did."""
    last_epoch = variant in LAST_EPOCH
    ablation, augmented = GAMER_VARIANTS[variant.partition(":")[0]]
    handling, tokenizer = setup.tokenizer(variant, collisions)
    arguments = TrainArguments(
        data=str(setup.augmented if augmented else setup.plain), tokenizer=str(tokenizer),
        output_dir=str(_gamer_dir(work, setup, seed, variant, handling)), preset=budget.preset, ablation=ablation,
        num_train_epochs=budget.epochs, per_device_train_batch_size=budget.batch_size,
        learning_rate=budget.gamer_learning_rate, early_stopping_patience=0 if last_epoch else budget.patience,
        seed=seed, on_unknown="skip", use_cpu=device == "cpu", bf16=device == "cuda", overwrite_output_dir=True,
        disable_tqdm=not progress, save_total_limit=2 if last_epoch else 1, logging_steps=20,  # 1 drops the last
        keep_checkpoints=last_epoch,  # the last epoch's checkpoint is scored
        **budget.selection(), **TRAINING_OVERRIDES.get(variant, {}),
    )
    trained = reusable_run(arguments) if not last_epoch else None
    if trained is not None:  # the same training arguments already ran to the end: score that checkpoint again
        info = read_json(trained / TRAINING_INFO_FILE)
        runtime = next((row["train_runtime"] for row in info["log_history"] if "train_runtime" in row), float("nan"))
        return trained, _train_record(info["log_history"], info["results"], runtime, budget, reused=True) | {
            "collisions": handling, "semantic_ids_sha256": _ids_digest(tokenizer)}
    start = time.perf_counter()
    result = train(arguments)
    train_seconds = time.perf_counter() - start
    outcome = read_json(result.checkpoint_dir / TRAINING_INFO_FILE)["results"]
    chosen = list_checkpoints(result.checkpoint_dir / CHECKPOINTS_SUBDIR)[-1] if last_epoch else result.checkpoint_dir
    if last_epoch and chosen.name != f"checkpoint-{result.global_step}":
        raise RuntimeError(f"{variant}: the last checkpoint (step {result.global_step}) was not kept; found {chosen}")
    record = _train_record(result.log_history, outcome, train_seconds, budget, reused=False) | {
        "collisions": handling, "semantic_ids_sha256": _ids_digest(tokenizer)}
    if last_epoch:
        record["evaluated_step"] = int(chosen.name.split("-")[-1])
    return chosen, record


def _ids_digest(tokenizer: Path) -> str:
    """The first 16 hex digits of the sha256 of the tokenizer's item index: which semantic IDs a run trained on.
    The same settings give slightly different IDs on another machine (k-means in another BLAS), so seeds run on two
    machines, or a model retrained beside another's old run, may not share them; the report says where not."""
    index = tokenizer / ITEM_INDEX_FILE
    return sha256_of(index if index.is_file() else tokenizer / LEGACY_ITEM_INDEX_FILE)[:16]


def reusable_run(arguments: TrainArguments) -> Path | None:
    """The output folder of a finished training run with exactly these arguments (None when there is none): a
    rerun of the evaluation (more test cases, new blends) scores it instead of training again."""
    folder = Path(arguments.output_dir)
    if not (folder / TRAINING_INFO_FILE).is_file() or not (folder / "model.safetensors").is_file():
        return None
    stored = read_json(folder / TRAINING_INFO_FILE).get("training_arguments", {})
    wanted = {k: v for k, v in asdict(arguments).items() if k != "disable_tqdm"}
    defaults = {f.name: f.default for f in fields(TrainArguments)}  # a field added since the run: it ran the default
    return folder if {k: stored.get(k, defaults[k]) for k in wanted} == wanted else None


def _train_record(log_history: list[dict[str, Any]], outcome: dict[str, Any], train_seconds: float, budget: Budget,
                  reused: bool) -> dict[str, Any]:
    epochs = [row["epoch"] for row in log_history if "eval_loss" in row and "epoch" in row]
    return {
        "train_seconds": round(train_seconds, 1), "reused_checkpoint": reused,
        "epochs_run": round(max(epochs, default=0.0), 2),
        "global_step": outcome["global_step"], "selected_by": budget.select_by,
        "best_eval_loss": outcome["best_eval_loss"], "best_eval_ndcg10": outcome.get("best_eval_ndcg10"),
        "validation": [{k: r[k] for k in ("epoch", "eval_loss", "eval_ndcg10") if k in r} for r in log_history
                       if "eval_loss" in r or "eval_ndcg10" in r],
        "stop_reason": "early_stopping" if outcome["stopped_early"] else "epochs",
        "evaluated_step": outcome["best_global_step"],
    }


def score_gamer(setup: DatasetSetup, evaluator: Evaluator, budget: Budget, variant: str, checkpoint: Path,
                info: dict[str, Any], device: str, blends: bool = True, new_items: bool = False,
                ) -> dict[str, dict[str, Any]]:
    """A trained GAMER checkpoint through gamer_hf.evaluation.gamer_rows; the full GAMER (with `blends`) also
    yields the BLENDS, the mixer chosen and the reranker fit on the validation cases (`new_items`: and
    RERANK_NEW_ITEMS)."""
    model, tokenizer = load_checkpoint(checkpoint, device=device)
    gamer = GamerRecommender(model, tokenizer, num_beams=budget.num_beams, max_history=budget.max_history,
                             on_unknown="skip")
    with_blends = blends and variant == "GAMER"
    rows = gamer_rows(evaluator, gamer, variant, baseline=variant in BASELINES,
                      validation=setup.mixer_cases if with_blends else None, popular=setup.popular,
                      explore=variant + NO_HISTORY in SIDE_ROWS, rerank_ablation=True, rerank_new_items=new_items)
    return _records(rows, **info)


def run_gamer(setup: DatasetSetup, evaluator: Evaluator, budget: Budget, seed: int, variant: str, work: Path,
              device: str, progress: bool, new_items: bool = False) -> dict[str, dict[str, Any]]:
    """Train one GAMER variant and score it."""
    checkpoint, info = train_gamer(setup, budget, seed, variant, work, device, progress)
    return score_gamer(setup, evaluator, budget, variant, checkpoint, info, device, new_items=new_items)


def reblend_gamer(setup: DatasetSetup, evaluator: Evaluator, budget: Budget, seed: int, work: Path, trained: dict,
                  device: str, new_items: bool = False) -> dict[str, dict[str, Any]]:
    """The BLENDS again from the GAMER model this run already trained (e.g. after widening the mixer grid)."""
    info = {k: v for k, v in trained.items() if k != "result"}
    checkpoint = _gamer_dir(work, setup, seed, "GAMER", setup.collisions["GAMER"])
    return {name: record for name, record in score_gamer(setup, evaluator, budget, "GAMER", checkpoint, info, device,
                                                         new_items=new_items).items() if _base(name) in BLENDS}


def _base(row: str) -> str:
    """The model a row belongs to: a SIDE_ROWS row (or RERANK_NEW_ITEMS) is scored with it."""
    return row.removesuffix(NO_HISTORY).removesuffix(PLAIN_BEAMS).removesuffix(NEW_ITEMS)


# -------------------------------------------------------------------------------------------- results


def _headline(result: dict[str, Any]) -> dict[str, float]:
    target = result.get("target", {})
    explore = result.get("slices", {}).get("explore", {}).get(result.get("target_behavior"), {})
    return {f"target_{k}": target.get(k, float("nan")) for k in HEADLINE} | {
        f"merged_{k}": result[MERGED][k] for k in HEADLINE} | {"explore_NDCG@10": explore.get("NDCG@10", float("nan"))}


def _explore_share(record: dict[str, Any]) -> float:
    return record.get("history_share@10", {}).get(EXPLORE, float("nan"))


def aggregate(runs: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> model -> {metric_mean, metric_std, seeds}; std is the sample std over seeds (0 for one seed)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dataset, seeds in runs.items():
        per_model: dict[str, list[dict[str, float]]] = {}
        for models in seeds.values():
            for model, record in models.items():
                per_model.setdefault(model, []).append(_headline(record["result"]) | {
                    "explore_history_share@10": _explore_share(record)})
        out[dataset] = {}
        for model in [m for m in MODELS + DIAGNOSTICS + SIDE_ROWS if m in per_model]:
            rows = per_model[model]
            summary: dict[str, float] = {"seeds": len(rows)}
            for key in rows[0]:
                values = np.array([row[key] for row in rows], dtype=float)
                summary[f"{key}_mean"] = float(values.mean())
                summary[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[dataset][model] = summary
    return out


def _runtime(runs: dict[str, Any], dataset: str, model: str, key: str) -> str:
    values = [m[model][key] for m in runs[dataset].values() if model in m and key in m[model]]
    return f"{np.mean(values):.0f}" if values else "-"


def markdown(results: dict[str, Any]) -> str:
    """One table per dataset: target and merged HR@10 / NDCG@10 as mean ± std over seeds."""
    lines = []
    for dataset, models in results["summary"].items():
        stats = results["datasets"][dataset]
        lines += [f"**{dataset}** ({stats['protocol']}; {stats['users']:,} users, {stats['items']:,} items; "
                  f"{stats['test_cases_used']:,} of {stats['test_cases_total']:,} test cases; data and semantic IDs "
                  f"{stats.get('setup_seconds', '-')} s)", "",
                  "| Model | seeds | target HR@10 | target NDCG@10 | target explore NDCG@10 | explore history "
                  "share@10 | merged HR@10 | merged NDCG@10 | train s | epochs |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        chosen = collision_lines(stats.get("collision_choice", {})) + id_assignment_lines(results["runs"][dataset])
        lines[-2:-2] = [*chosen, ""] if chosen else []
        best = max((s["target_NDCG@10_mean"] for m, s in models.items() if not m.startswith("GAMER")),
                   default=float("nan"))  # the best baseline, rules and TIGER included
        for model, s in models.items():
            cells = [f"{s[f'{k}_mean']:.4f} ± {s[f'{k}_std']:.4f}" for k in
                     ("target_HR@10", "target_NDCG@10", "explore_NDCG@10", "explore_history_share@10", "merged_HR@10",
                      "merged_NDCG@10")]
            if model.startswith("GAMER") and s["target_NDCG@10_mean"] >= best:
                cells[1] = f"**{cells[1]}**"
            lines.append(f"| {model} | {s['seeds']} | " + " | ".join(cells) + f" | "
                         f"{_runtime(results['runs'], dataset, model, 'train_seconds')} | "
                         f"{_runtime(results['runs'], dataset, model, 'epochs_run')} |")
        lines += ["", *bootstrap_table(results, dataset), ""]
    return "\n".join(lines)


def collision_lines(choices: Mapping[str, Any]) -> list[str]:
    """The semantic-ID collision handling each family chose on validation, with both figures."""
    lines = []
    for chooser, choice in choices.items():
        figures = ", ".join(f"{h} {v:.4f}" for h, v in choice["validation_ndcg10"].items()) or "one candidate"
        unbuilt = "".join(f"; no {h} tokenizer: {why}" for h, why in choice["unbuilt"].items())
        lines.append(f"- {chooser}'s semantic IDs: **{choice['chosen']}** (validation NDCG@10 of seed {choice['seed']}: "
                     f"{figures}{unbuilt})")
    return lines


def id_assignment_lines(seeds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Where the learned models of one dataset did not all train on the same semantic IDs (runs that recorded
    theirs): which seeds and models used which, since a paired difference between two of them then also holds the
    difference of their IDs."""
    used: dict[str, list[str]] = {}
    for seed, models in sorted(seeds.items()):
        for model, record in models.items():
            if record.get("semantic_ids_sha256") and _base(model) == model and model not in BLENDS:
                used.setdefault(record["semantic_ids_sha256"], []).append(f"{model} seed {seed}")
    if len(used) < 2:
        return []
    return ["- semantic IDs differ between runs (sha256 of the item index): "
            + "; ".join(f"`{digest[:8]}` {', '.join(runs)}" for digest, runs in used.items())]


LEARNED = ("SASRec", "SASRec+behavior", "TIGER", SASREC_EXPLORE)  # issue 16's first goal: the best of these (run)
GOAL_COLUMNS = (  # header, slice, the references (None: every baseline)
    ("all", ALL_CASES, None), ("explore", EXPLORE, None), ("explore vs best learned", EXPLORE, LEARNED),
    ("explore vs best learned without history", EXPLORE, tuple(m + NO_HISTORY for m in LEARNED)),
    ("all vs Repeat+learned", ALL_CASES, ("Repeat+learned",)),
    ("all vs GAMER+rerank", ALL_CASES, ("GAMER+rerank",)),  # the reranker's variants on the same beams
    ("explore vs GAMER:no-history", EXPLORE, ("GAMER" + NO_HISTORY,)),  # the :no-history rows of GAMER's variants
    ("all vs GAMER", ALL_CASES, ("GAMER",)))  # GAMER's variants (GAMER-noaug, GAMER-reg, ...) against the full model


def _report(cases: dict[str, Any], models: dict[str, Any], references: Sequence[str] | None) -> EvaluationReport:
    """One seed's rows as a report whose baselines are `references` (None: every baseline) and the GAMER rows."""
    report = EvaluationReport(cases["behaviors"], case_behaviors=cases["case_behaviors"],
                              case_slices=cases["case_slices"])
    for name, record in models.items():
        if record["result"].get("per_case") and (references is None or name in references or name.startswith("GAMER")):
            result = ModelResult.from_dict(record["result"])
            result.baseline = result.baseline if references is None else name in references
            report.add(result)
    return report


def bootstrap_table(results: dict[str, Any], dataset: str) -> list[str]:
    """Per seed: target NDCG@10 of the GAMER rows minus a reference on the same test cases, with 95% paired-bootstrap
    intervals: the best baseline (rules, SASRec, TIGER) on all and explore cases, the best learned baseline on
    explore cases and Repeat+learned on all cases (the issue's two goals). Then the same pooled over the seeds."""
    cases = results["datasets"][dataset].get("cases")
    if not cases:
        return []
    header = ["| Model | seed | " + " | ".join(h for h, _, _ in GOAL_COLUMNS) + " |", "|---|---:|" + "---:|" * len(GOAL_COLUMNS)]
    lines = ["Target NDCG@10 minus a reference on the same cases, mean [95% paired bootstrap over test cases] vs "
             "the reference named:", "", *header]
    reports: dict[str, list[EvaluationReport]] = {}
    for seed, models in results["runs"][dataset].items():
        compared = []
        for _, slice_name, references in GOAL_COLUMNS:
            report = _report(cases, models, references)
            reports.setdefault(f"{slice_name}/{references}", []).append(report)
            compared.append(report.differences("NDCG@10", report.target_behavior, slice_name))
        for name in (m for m in models if m.startswith("GAMER")):
            cells = [f"{found[1][name]} vs {found[0]}" if found and name in found[1] else "-" for found in compared]
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    if len(results["runs"][dataset]) < 2:
        return lines
    lines += ["", "The same pooled over the seeds: seed-mean target NDCG@10 minus the reference with the best seed-mean, "
              "[95% seed-pooled paired bootstrap: test cases resampled, each with all its seeds], and the ratio of the "
              "seed means:", "", *header]
    compared = []
    for _, slice_name, references in GOAL_COLUMNS:
        seeds = reports[f"{slice_name}/{references}"]
        found = seed_pooled_differences(seeds, "NDCG@10", seeds[0].target_behavior, slice_name)
        compared.append((found, seeds[0].case_mask(seeds[0].target_behavior, slice_name), seeds))
    names = [m for m in next(iter(results["runs"][dataset].values())) if m.startswith("GAMER")]
    for name in names:
        cells = []
        for found, mask, seeds in compared:
            if not found or name not in found[1]:
                cells.append("-")
                continue
            reference = np.mean([np.asarray(r[found[0]].per_case["NDCG@10"])[mask].mean() for r in seeds])
            ratio = (reference + found[1][name].mean) / reference if reference > 0 else float("nan")
            cells.append(f"{found[1][name]} vs {found[0]}, {ratio:.2f}x")
        lines.append(f"| {name} | {len(seeds)} seeds | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    """Target and merged NDCG@10 (mean ± std over seeds) per model, one panel per dataset; written atomically."""
    datasets = list(results["summary"])
    figure = Figure(figsize=(5.5 * len(datasets), 4.2))
    FigureCanvasAgg(figure)
    axes_row = figure.subplots(1, len(datasets), squeeze=False)[0]
    for axes, dataset in zip(axes_row, datasets):
        models = list(results["summary"][dataset])
        x = np.arange(len(models))
        for offset, key, label in ((-0.2, "target_NDCG@10", "target behavior"), (0.2, "merged_NDCG@10", "merged")):
            means = [results["summary"][dataset][m][f"{key}_mean"] for m in models]
            stds = [results["summary"][dataset][m][f"{key}_std"] for m in models]
            axes.bar(x + offset, means, 0.4, yerr=stds, capsize=2, label=label)
        axes.set_xticks(x, models, rotation=45, ha="right", fontsize="small")
        axes.set(title=dataset, ylabel="NDCG@10")
        axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")


def save(results: dict[str, Any], out: Path) -> None:
    results["summary"] = aggregate(results["runs"])
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("quality.json", json.dumps(results, indent=1) + "\n"), ("quality.md", markdown(results))):
        with atomic_output(out / name) as temporary:
            temporary.write_text(text)
    if any(results["summary"].values()):
        plot(results, out / "quality.png")


def read_results(file: Path) -> dict[str, Any]:
    """A quality.json (or .json.gz, as committed); one that is missing or not a results file is refused in one line
    naming it."""
    try:
        results = json.loads(gzip.decompress(file.read_bytes()) if file.suffix == ".gz" else file.read_text())
    except (OSError, EOFError, ValueError) as problem:
        raise ConfigurationError(f"{file}: not a readable quality.json ({type(problem).__name__}: {problem})") from None
    if not isinstance(results, dict) or {"budget", "datasets", "runs"} - set(results):
        raise ConfigurationError(f"{file}: not a readable quality.json (no budget, datasets and runs)")
    return results


def merge(files: Sequence[Path]) -> dict[str, Any]:
    """The runs of several quality.json (or .json.gz) files of one budget (seeds run side by side, each into its own
    --out) as one results dict. They must agree where they meet: the budget, each dataset's test cases and chosen
    tokenizers, and any (dataset, seed, model) run two files hold (a seed's file started from a copy of another's holds
    its rows)."""
    merged: dict[str, Any] = {"runs": {}, "datasets": {}}
    for file in files:
        results = read_results(file)
        if merged.setdefault("budget", results["budget"]) != results["budget"]:
            raise ConfigurationError(f"{file}: a {results['budget']['name']!r} run; the first file's is "
                                     f"{merged['budget']['name']!r}: merge runs of one budget")
        for key in ("device", "data_seed", "torch"):
            merged.setdefault(key, results.get(key))
        for key, pick in (("started", min), ("finished", max)):
            if key in results:
                merged[key] = pick(merged.get(key, results[key]), results[key])
        for dataset, setup in results["datasets"].items():
            kept = merged["datasets"].setdefault(dataset, setup)
            chosen = [{family: choice["chosen"] for family, choice in entry.get("collision_choice", {}).items()}
                      for entry in (kept, setup)]
            if kept.get("cases") != setup.get("cases") or chosen[0] != chosen[1]:
                raise ConfigurationError(f"{file}: {dataset}'s test cases or chosen tokenizers differ from an earlier "
                                         "file's")
        for dataset, seeds in results["runs"].items():
            for seed, models in seeds.items():
                done = merged["runs"].setdefault(dataset, {}).setdefault(seed, {})
                for model, record in models.items():
                    if done.setdefault(model, record) != record:
                        raise ConfigurationError(f"{file}: {dataset} seed {seed} {model} differs from the run of an "
                                                 "earlier file")
    return merged


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS + DIAGNOSTICS)
    parser.add_argument("--budget", default="small", choices=list(BUDGETS),
                        help="quick: minutes, a smoke test; small: 2,500 users; cpu5k: issue 16's CPU bench (5,000 "
                             "users, 1,000 test cases); full: reference settings for a GPU")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench_quality"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the user and case subsamples")
    parser.add_argument("--epochs", type=int, help="override the budget's epochs (the budget is renamed: a study)")
    parser.add_argument("--patience", type=_patience, help="override the budget's early-stopping patience of SASRec, TIGER "
                        "and GAMER; 0 never stops early, the best validation epoch is still the one scored (the budget "
                        "is renamed)")
    parser.add_argument("--test-cases", type=_case_cap("--test-cases", every=True), help="override the budget's "
                        "test-case cap, a number or 'all' (the budget is renamed; trained checkpoints with the same "
                        "training arguments are reused)")
    parser.add_argument("--validation-cases", type=_case_cap("--validation-cases", every=False), help="override the "
                        "budget's validation subset, the cases whose loss and NDCG@10 select and early-stop the "
                        "learned models, and with them the collision choice (the budget is renamed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="keep finished (dataset, seed, model) runs in --out")
    parser.add_argument("--redo", nargs="+", default=[], choices=MODELS + DIAGNOSTICS,
                        help="with --resume: run these models again (the blends alone reuse the trained GAMER)")
    parser.add_argument("--choices-from", type=Path, metavar="QUALITY_JSON",
                        help="take each dataset's collision choice from this quality.json(.gz) of the same budget "
                             "where --out has none (a seed run beside seed 0's reuses its choice)")
    parser.add_argument("--render", action="store_true", help="only rewrite quality.md / .png from --out/quality.json")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="QUALITY_JSON",
                        help="write the runs of these quality.json(.gz) files (seeds run side by side) into "
                             "--out/quality.json, then render it")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    args = parser.parse_args(argv)
    if args.data_dir is None and not (args.render or args.merge):
        parser.error("give --data-dir or set GAMER_HF_DATA_DIR")
    if set(BLENDS) & {_base(m) for m in args.models} and "GAMER" not in args.models:
        parser.error(f"{BLENDS} are made from GAMER's lists: add GAMER to --models")
    if RERANK_NEW_ITEMS in args.models and "GAMER+rerank" not in args.models:
        parser.error(f"{RERANK_NEW_ITEMS} is fit and scored beside GAMER+rerank: add GAMER+rerank to --models")
    return args


def _patience(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"--patience takes a number >= 0 (0: never stop early), got {value!r}")
    return int(value)


def _case_cap(flag: str, every: bool) -> Callable[[str], int | str]:
    """The argparse type of a case cap: a positive number, or 'all' where `every` (the validation subset is always a
    number: the per-epoch ranking pass reads a fixed count)."""
    def parse(value: str) -> int | str:
        if every and value == "all":
            return value
        if not value.isdigit() or int(value) < 1:
            choices = "a positive number or 'all'" if every else "a positive number"
            raise argparse.ArgumentTypeError(f"{flag} takes {choices}, got {value!r}")
        return int(value)
    return parse


def budget_for(args: argparse.Namespace, budget: Budget | None = None) -> Budget:
    """The flags' budget (or `budget`) with --epochs, --patience, --validation-cases and --test-cases applied; an
    overridden budget gets its own name, so --resume never mixes its runs with the standard ones."""
    budget = budget or BUDGETS[args.budget]
    if args.epochs is not None:
        budget = replace(budget, name=f"{budget.name}-epochs={args.epochs}", epochs=args.epochs)
    if getattr(args, "patience", None) is not None:
        budget = replace(budget, name=f"{budget.name}-patience={args.patience}", patience=args.patience)
    if getattr(args, "validation_cases", None) is not None:
        budget = replace(budget, name=f"{budget.name}-validation={args.validation_cases}",
                         max_validation_cases=args.validation_cases)
    if getattr(args, "test_cases", None) is not None:
        budget = replace(budget, name=f"{budget.name}-test={args.test_cases}",
                         max_test_cases=None if args.test_cases == "all" else args.test_cases)
    return budget


def families_of(models: Sequence[str]) -> list[str]:
    """The model families (`family`) whose tokenizer `models` need chosen."""
    return sorted({family(m) for m in models if _base(m) in GAMER_VARIANTS or m in LAST_EPOCH or _base(m) in BLENDS},
                  key=("GAMER", "TIGER").index)


def choose_tokenizer(setup: DatasetSetup, budget: Budget, chooser: str, args: argparse.Namespace,
                     stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """`collision_choice` for one family: its model (GAMER or TIGER) trained with seed CHOICE_SEED on each tokenizer
    (a finished run with the same arguments is reused, so the chosen one is seed 0's run as well)."""
    def validate(handling: str) -> float:
        print(f"[{time.strftime('%H:%M:%S')}] {setup.name}: {chooser} seed {CHOICE_SEED} on the {handling} tokenizer "
              "(collision handling chosen on validation)", flush=True)
        _, record = train_gamer(setup, budget, CHOICE_SEED, chooser, args.work_dir, args.device, args.progress, handling)
        return record["best_eval_ndcg10"]

    return collision_choice(list(setup.tokenizers), validate, setup.unbuilt, stored)


def starting_results(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    """What a run starts from: --out's quality.json with --resume (it must be of the same budget), and the collision
    choices of --choices-from for the datasets that have none yet, so that a seed run in its own --out reuses seed 0's
    choice instead of training it again (the file must be of the same budget: the choice is made by training)."""
    results: dict[str, Any] = {"runs": {}, "datasets": {}}
    sources = [(args.out / "quality.json", "--resume")] if args.resume and (args.out / "quality.json").is_file() else []
    sources += [(args.choices_from, "--choices-from")] if args.choices_from else []
    for file, flag in sources:
        found = read_results(file)
        if (found["budget"].get("name"), found["budget"].get("select_by", "loss")) != (budget.name, budget.select_by):
            raise ConfigurationError(f"{file} holds a {found['budget'].get('name')!r} run; {flag} needs the same "
                                     f"budget ({budget.name!r}, select_by {budget.select_by!r})")
        if flag == "--resume":
            results = found
            continue
        for dataset, setup in found["datasets"].items():
            kept = results["datasets"].setdefault(dataset, {})
            kept["collision_choice"] = setup.get("collision_choice", {}) | kept.get("collision_choice", {})
    return results


def run(args: argparse.Namespace, budget: Budget | None = None) -> dict[str, Any]:
    """The whole benchmark; `budget` overrides the one the flags select (tests pass a smaller one)."""
    budget = budget_for(args, budget)
    hf_logging.set_verbosity_error()
    if not args.progress:
        hf_logging.disable_progress_bar()
    logging.getLogger("gamer_hf").setLevel(logging.ERROR)
    results = starting_results(args, budget)
    results.update(budget=asdict(budget), device=args.device, data_seed=args.data_seed, torch=torch.__version__,
                   started=results.get("started", time.strftime("%Y-%m-%d %H:%M")))
    for dataset in args.datasets:
        setup = setup_dataset(dataset, Path(args.data_dir), args.work_dir, budget, args.data_seed)
        stored = results["datasets"].get(dataset, {}).get("collision_choice", {})
        evaluator = SharingEvaluator(setup.test_cases, setup.behaviors, batch_size=32, progress=args.progress,
                                     known_items=setup.known_items)
        # The cases first: every file saved from here on (a reader may --merge it mid-run) holds them.
        results["datasets"][dataset] = setup.stats | {"collision_choice": stored, "cases": {
            "behaviors": setup.behaviors, "case_behaviors": evaluator.case_behaviors,
            "case_slices": evaluator.case_slices}}
        for chooser in families_of(args.models):
            stored[chooser] = choose_tokenizer(setup, budget, chooser, args, stored.get(chooser))
            setup.collisions[chooser] = stored[chooser]["chosen"]
            save(results, args.out)
        runs = results["runs"].setdefault(dataset, {})
        rules = None
        for seed in args.seeds:
            done = runs.setdefault(str(seed), {})
            # What the fitted rows were fit on, and how (the gate grid, the exact solver, the rerankers fit on top of
            # the rule with its logit as an offset: a run before any of them is refit).
            stamp = {"cases": len(setup.mixer_cases), "split": budget.fit_split, "gate": list(GATE_GRID),
                     "solver": "newton", "rerank": "offset, the rule itself on test"}
            for row in [r for r in done if _base(r) in args.redo or (_base(r) in FITTED and done[r].get("fit") != stamp)]:
                done.pop(row)
            todo = [m for m in args.models if m not in done]
            if set(RULES) & set(todo):
                rules = rules or run_rules(setup, evaluator)
                done.update({m: rules[m] | ({"fit": stamp} if m in FITTED else {}) for m in RULES if m in todo})
                evaluator.attach_shares(done)
            blends = [m for m in BLENDS if any(_base(row) == m for row in todo)]  # RERANK_NEW_ITEMS: GAMER+rerank
            if blends and "GAMER" in done:  # the blends are made from GAMER's generated lists
                print(f"[{time.strftime('%H:%M:%S')}] {dataset} seed {seed}: {blends} from the trained GAMER")
                scored = reblend_gamer(setup, evaluator, budget, seed, args.work_dir, done["GAMER"], args.device,
                                       RERANK_NEW_ITEMS in args.models)
                done.update({k: v | {"fit": stamp} for k, v in scored.items() if _base(k) in blends})
                evaluator.attach_shares(done)
                save(results, args.out)
            elif blends and "GAMER" not in todo:
                todo.append("GAMER")
            for model in (m for m in todo if m in GAMER_VARIANTS or m in LAST_EPOCH or m.startswith("SASRec")):
                print(f"[{time.strftime('%H:%M:%S')}] {dataset} seed {seed}: {model}", flush=True)
                if model.startswith("SASRec"):
                    done.update(run_sasrec(setup, evaluator, budget, seed, model, args.progress, args.device))
                else:
                    done.update({k: v | ({"fit": stamp} if _base(k) in FITTED else {}) for k, v in run_gamer(
                        setup, evaluator, budget, seed, model, args.work_dir, args.device, args.progress,
                        RERANK_NEW_ITEMS in args.models).items() if _base(k) in args.models})
                evaluator.attach_shares(done)
                save(results, args.out)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M")
    save(results, args.out)
    print(markdown(results))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """The script's entry point: a file or flag the user can fix (a `GamerError`) is one line and exit 2, as in
    `gamer-hf`; anything else keeps its traceback."""
    args = parse_args(argv)
    with exit_on_user_error("quality.py"):
        if args.render or args.merge:
            results = merge(args.merge) if args.merge else read_results(args.out / "quality.json")
            save(results, args.out)
            print(markdown(results))
        else:
            run(args)


if __name__ == "__main__":
    main()
