"""Semantic-ID ablation: embedding source x collision handling, on the quality bench's own splits.

For every dataset the script prepares (or reuses) exactly the data of `quality.py` (same user subsample,
max history, validation and test cases), then builds one tokenizer per cell and reports the ID-quality
figures of each: the share of items whose embedding is a random fallback (over all catalogue items
and over the items that occur in training), the collision rate per prefix level before handling,
and neighbour agreement (share of an item's 10 strongest training co-occurrence neighbours that share
its first code, next to chance). With --train, one GAMER per cell is trained on the same budget (a fixed
number of epochs, never a wall-clock cap: on a shared machine a time cap would give the cells
different numbers of steps; on the plain training rows unless --augmented) and scored on the same test cases (target-behavior NDCG@10 on all, explore and cold cases), each cell
against the reference cell with a paired bootstrap over the test cases (one training seed: the
interval covers test-case sampling, not training noise).

Cells (name: embeddings / quantizer / collisions):
    ppmi/plain/reassign      today's bench tokenizer (PPMI-SVD, unbalanced RQ-KMeans, reassigned last codes)
    ppmi/plain/append, item2vec/plain/reassign, item2vec/plain/append   the 2 x 2 of embedding source x
                             collision handling on today's quantizer
    ppmi/balanced/reassign   balanced RQ-KMeans
    ppmi/balanced/append     TIGER's extra disambiguation level instead of reassignment
    item2vec/balanced/reassign, item2vec/balanced/append   skip-gram embeddings
    */balanced-learned/append  codebooks fitted on the items with learned embeddings only; fallback
                             items (never in training, or alone in every training sequence) are encoded
                             with them and take no codebook capacity
    ppmi/plain/reassign+profile, item2vec/plain/reassign+profile   items alone in every training sequence
                             get rows mapped from their training profile (`lone_items="profile"`) instead of
                             random ones; the table adds the map's held-out R^2 (0: the mean embedding)

    nice -n 10 python recipes/bench/semantic_id_quality.py --datasets retailrocket_cml retail_beh_mbht
    nice -n 10 python recipes/bench/semantic_id_quality.py --train --epochs 5

Outputs: semantic_id_quality.json / .md in --out (default recipes/bench/results); finished cells are kept
with --resume.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from gamer_hf.data import load_prepared
from gamer_hf.evaluation import (
    ALL_CASES,
    Evaluator,
    as_cases,
    GamerRecommender,
    MostPopular,
    Repeat,
    items_seen,
    paired_bootstrap,
    slice_mask,
    subset_cases,
    target_behavior,
)
from gamer_hf.checkpoint import load_checkpoint
from gamer_hf.semantic_ids import REPORT_FILENAME, build_semantic_ids, item_embeddings, load_inputs, save_semantic_ids
from gamer_hf.training import TrainArguments, train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality  # noqa: E402  (beside this script: its data preparation defines the splits compared on)

DEFAULT_OUT = HERE / "results"
DATASETS = ("retailrocket_cml", "retail_beh_mbht")
REFERENCE = "ppmi/plain/reassign"
SLICE_COLUMNS = (ALL_CASES, "explore", "cold")


@dataclass(frozen=True)
class Cell:
    embeddings: str  # "ppmi" or "item2vec"
    quantizer: str  # "plain", "balanced" or "balanced-learned" (codebooks fitted on learned rows only)
    collisions: str  # "reassign" or "append"
    lone: str = "random"  # `lone_items` of item_embeddings: "random" or "profile"

    @property
    def name(self) -> str:
        return f"{self.embeddings}/{self.quantizer}/{self.collisions}" + ("+profile" if self.lone == "profile" else "")


CELLS = [Cell("ppmi", "plain", "reassign"), Cell("ppmi", "plain", "append"), Cell("item2vec", "plain", "reassign"),
         Cell("item2vec", "plain", "append"), Cell("ppmi", "balanced", "reassign"), Cell("ppmi", "balanced", "append"),
         Cell("item2vec", "balanced", "reassign"), Cell("item2vec", "balanced", "append"),
         Cell("ppmi", "balanced-learned", "append"), Cell("item2vec", "balanced-learned", "append"),
         Cell("ppmi", "plain", "reassign", "profile"), Cell("item2vec", "plain", "reassign", "profile")]


def held_out_agreement(item_index: dict[str, tuple[int, ...]], cases: list) -> dict[str, float | int]:
    """On explore validation cases: how often some target shares the first code of the last prompt item,
    and how often it would by chance (a random item per target). A generator that first commits to a
    code near the recent history reaches such targets; training co-occurrence cannot leak into this."""
    first = {item: codes[0] for item, codes in item_index.items()}
    sizes: dict[int, int] = {}
    for code in first.values():
        sizes[code] = sizes.get(code, 0) + 1
    hits, chance, count = 0, 0.0, 0
    for case in cases:
        if set(case.target_items) & set(case.history_items):
            continue  # repeat cases: the target is the history item itself
        last = first[case.history_items[-1]]
        hits += any(first[item] == last for item in case.target_items)
        chance += 1.0 - (1.0 - sizes[last] / len(first)) ** len(case.target_items)
        count += 1
    return {"agreement": hits / count if count else 0.0, "chance": chance / count if count else 0.0, "cases": count}


def build_cell(prepared: Path, out: Path, cell: Cell, budget: Any, seed: int) -> dict[str, Any]:
    """Embed, quantize and save one cell's tokenizer; returns its ID-quality figures."""
    inputs = load_inputs(prepared)
    start = time.perf_counter()
    embedded = item_embeddings(inputs.item_ids, kind="collaborative", sequences=inputs.sequences,
                               collaborative=cell.embeddings, seed=seed, lone_items=cell.lone,
                               position_behaviors=inputs.position_behaviors, num_behaviors=len(inputs.behaviors))
    embed_seconds = time.perf_counter() - start

    def quantize(collisions: str) -> Any:
        return build_semantic_ids(inputs.item_ids, embeddings=embedded, num_levels=budget.sid_levels,
                                  codebook_size=budget.sid_codebook, balanced=cell.quantizer != "plain",
                                  collisions=collisions, seed=seed, sequences=inputs.sequences,
                                  fit_on="learned" if cell.quantizer == "balanced-learned" else "all")

    try:
        sids = quantize(cell.collisions)
    except ValueError:  # as quality.py does: when reassignment finds a full prefix, append a level instead
        if cell.collisions == "append":
            raise
        sids = quantize("append")
    save_semantic_ids(sids, out, behaviors=inputs.behaviors, overwrite=True,
                      metadata={"embedding": {"kind": "collaborative", "collaborative": cell.embeddings}})
    report = sids.report
    validation = as_cases(load_prepared(prepared).splits["validation"])
    return {"held_out_agreement": held_out_agreement(sids.item_index, validation),"codebook_sizes": report.codebook_sizes, "collision_handling": report.collision_handling,
            "requested_collisions": cell.collisions,
            "collision_rate_per_level": report.collision_rate_per_level, "coverage": report.embedding_coverage,
            "neighbour_agreement": report.neighbour_agreement, "first_level_usage": report.levels[0].usage,
            "seconds": {"embed": round(embed_seconds, 1), **{k: round(v, 1) for k, v in report.timings.items()}}}


def train_and_score(setup: dict[str, Any], tokenizer: Path, out: Path, budget: Any, args: argparse.Namespace,
                    evaluator: Evaluator) -> dict[str, Any]:
    """GAMER on this cell's tokenizer with the bench budget (epoch selected as the budget's `select_by` says, validation
    NDCG@10 by default, as quality.py), scored on the test cases."""
    seed, device = args.seed, args.device
    start = time.perf_counter()
    train(TrainArguments(
        data=str(setup["augmented" if args.augmented else "plain"]), tokenizer=str(tokenizer), output_dir=str(out), preset=budget.preset,
        num_train_epochs=budget.epochs, per_device_train_batch_size=budget.batch_size,
        learning_rate=budget.gamer_learning_rate, early_stopping_patience=budget.patience, seed=seed,
        on_unknown="skip", use_cpu=device == "cpu", bf16=device == "cuda", overwrite_output_dir=True,
        disable_tqdm=True, save_total_limit=1, logging_steps=20, **budget.selection()))
    train_seconds = time.perf_counter() - start
    model, tokenizer_ = load_checkpoint(out, device=device)
    gamer = GamerRecommender(model, tokenizer_, num_beams=budget.num_beams, max_history=budget.max_history,
                             on_unknown="skip")
    result = evaluator.evaluate(gamer, "GAMER")
    return {"train_seconds": round(train_seconds, 1), "result": result.to_dict()}


def _target_values(record: dict[str, Any], labels: dict[str, Any], slice_name: str) -> list[float]:
    """Per-case target-behavior NDCG@10 of one scored cell within `slice_name` ("all", "explore", "cold")."""
    target = target_behavior(labels["behaviors"])
    keep = (slice_mask(labels["case_slices"], slice_name) if slice_name != ALL_CASES
            else [True] * len(labels["case_slices"]))
    values = record["result"]["per_case"]["NDCG@10"]
    return [v for v, behavior, k in zip(values, labels["case_behaviors"], keep) if k and behavior == target]


def compare_cells(dataset: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per trained cell and slice: mean target NDCG@10 and the paired-bootstrap difference to the reference cell."""
    cells, labels = dataset["cells"], dataset.get("cases")
    reference = cells.get(REFERENCE, {}).get("gamer")
    out: dict[str, dict[str, Any]] = {}
    for name, cell in cells.items():
        if "gamer" not in cell or labels is None:
            continue
        row = {}
        for slice_name in SLICE_COLUMNS:
            values = _target_values(cell["gamer"], labels, slice_name)
            if not values:
                continue
            row[slice_name] = {"ndcg10": sum(values) / len(values), "cases": len(values)}
            if reference is not None and name != REFERENCE:
                base = _target_values(reference, labels, slice_name)
                row[slice_name]["vs_reference"] = paired_bootstrap(values, base).to_dict()
        out[name] = row
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for dataset, data in results["datasets"].items():
        lines += [f"**{dataset}** ({data['items']:,} items, {data['seen_in_training']:,} of them in the training "
                  f"sequences)", "",
                  "| Cell | fallback share (all items) | fallback share (training items) | of them alone / beside a "
                  "partner | collision rate per level "
                  "| neighbour agreement (chance) | validation next-item agreement (chance, cases) | level-1 usage "
                  "| profile rows (held-out R^2) | embed s |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for name, cell in data["cells"].items():
            if "error" in cell:
                lines.append(f"| {name} | failed: {cell['error']} | | | | | | | | |")
                continue
            if "ids" not in cell:  # not built yet (an interrupted run)
                continue
            ids = cell["ids"]
            coverage, agreement, held = ids["coverage"], ids["neighbour_agreement"], ids["held_out_agreement"]
            rates = " / ".join(f"{rate:.3f}" for rate in ids["collision_rate_per_level"])
            mapped = coverage.get("profile_map")
            profile = f"{coverage['profile_items']} ({mapped['held_out_r2']:.4f})" if mapped else "-"
            handled = "" if ids["collision_handling"] in (ids["requested_collisions"], "none") else f" (fell back to {ids['collision_handling']})"
            lines.append(f"| {name}{handled} | {coverage['fallback_share']:.3f} | {coverage['fallback_share_of_seen']:.3f} | "
                         f"{coverage.get('fallback_seen_alone', '-')} / {coverage.get('fallback_seen_with_partner', '-')} | "
                         f"{rates} | {agreement['agreement']:.3f} ({agreement['chance']:.3f}) | "
                         f"{held['agreement']:.3f} ({held['chance']:.3f}, {held['cases']}) | "
                         f"{ids['first_level_usage']:.2f} | {profile} | {ids['seconds']['embed']:.1f} |")
        compared = compare_cells(data)
        if compared:
            lines += ["", f"GAMER target NDCG@10 per cell (one seed), and the difference to {REFERENCE} "
                      "[95% paired bootstrap over test cases]:", "",
                      "| Cell | " + " | ".join(f"{s} NDCG@10 | {s} vs reference" for s in SLICE_COLUMNS) + " | train s |",
                      "|---|" + "---:|---:|" * len(SLICE_COLUMNS) + "---:|"]
            for name, row in compared.items():
                cells = []
                for slice_name in SLICE_COLUMNS:
                    entry = row.get(slice_name)
                    if entry is None:
                        cells += ["-", "-"]
                        continue
                    diff = entry.get("vs_reference")
                    cells += [f"{entry['ndcg10']:.4f} ({entry['cases']})",
                              "reference" if diff is None else
                              f"{diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"]
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {data['cells'][name]['gamer']['train_seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def save(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("semantic_id_quality.json", json.dumps(results, indent=1) + "\n"),
                       ("semantic_id_quality.md", markdown(results))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def setup_dataset(name: str, data_dir: Path, work: Path, budget: Any, data_seed: int) -> dict[str, Any]:
    """The bench's splits for `name` (prepared once, shared with quality.py runs in the same work dir)."""
    root = work / name
    protocol = quality.DATASETS[name]
    events = quality.subsample_users(data_dir / name, root / "events", budget.max_users, data_seed)
    plain = quality._prepare(events, protocol, root / "prepared", budget, 0, data_seed)
    quality._prepare(events, protocol, root / "prepared_aug", budget, budget.augment_copies, data_seed)
    test = as_cases(subset_cases(plain.splits["test"], budget.max_test_cases, data_seed))
    return {"root": root, "plain": root / "prepared", "augmented": root / "prepared_aug",
            "test": test, "behaviors": dict(plain.metadata["behaviors"]),
            "known": items_seen(plain.splits["train"]["items"]), "items": len(plain.item_ids)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--cells", nargs="+", default=[c.name for c in CELLS], choices=[c.name for c in CELLS])
    parser.add_argument("--budget", default="small", choices=list(quality.BUDGETS), help="a quality.py budget")
    parser.add_argument("--train", action="store_true", help="also train and score one GAMER per cell")
    parser.add_argument("--epochs", type=int, help="GAMER epochs (default: the budget's)")
    parser.add_argument("--augmented", action="store_true", help="train on the augmented rows (default: plain)")
    parser.add_argument("--seed", type=int, default=0, help="GAMER and semantic-ID seed")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench_quality"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resume", action="store_true", help="keep finished cells in --out")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("give --data-dir or set GAMER_HF_DATA_DIR")
    return args


def run(args: argparse.Namespace, budget: Any | None = None) -> dict[str, Any]:
    """The ablation; `budget` overrides the named one (tests pass a tiny one)."""
    budget = budget or quality.BUDGETS[args.budget]
    if args.epochs is not None:
        budget = replace(budget, epochs=args.epochs)
    hf_logging.set_verbosity_error()
    results_file = args.out / "semantic_id_quality.json"
    results: dict[str, Any] = {"datasets": {}}
    if args.resume and results_file.is_file():
        results = json.loads(results_file.read_text())
    results.update(budget=budget.name, epochs=budget.epochs, select_by=budget.select_by, seed=args.seed, data_seed=args.data_seed,
                   device=args.device, augmented=args.augmented)
    cells = [next(c for c in CELLS if c.name == name) for name in dict.fromkeys(args.cells)]  # in the given order
    for name in args.datasets:
        setup = setup_dataset(name, Path(args.data_dir), args.work_dir, budget, args.data_seed)
        data = results["datasets"].setdefault(name, {"cells": {}})
        data.update(items=setup["items"], seen_in_training=len(setup["known"]))
        evaluator = Evaluator(setup["test"], setup["behaviors"], batch_size=32, progress=False,
                              known_items=setup["known"])
        data["cases"] = {"behaviors": setup["behaviors"], "k_values": list(evaluator.k_values),
                         "case_behaviors": evaluator.case_behaviors, "case_slices": evaluator.case_slices}
        for cell in cells:
            record = data["cells"].setdefault(cell.name, {})
            folder = setup["root"] / "sid_ablation" / cell.name.replace("/", "-")
            if "ids" not in record or not (folder / "tokenizer" / REPORT_FILENAME).is_file():  # (re)build a lost one
                print(f"[{time.strftime('%H:%M:%S')}] {name} {cell.name}: semantic IDs", flush=True)
                try:
                    record["ids"] = build_cell(setup["plain"], folder / "tokenizer", cell, budget, args.seed)
                except ValueError as error:
                    record["error"] = str(error)
                save(results, args.out)
            if args.train and "ids" in record and "gamer" not in record:
                print(f"[{time.strftime('%H:%M:%S')}] {name} {cell.name}: GAMER", flush=True)
                record["gamer"] = train_and_score(setup, folder / "tokenizer", folder / "gamer", budget, args, evaluator)
                save(results, args.out)
        for cell_name, comparison in compare_cells(data).items():
            data["cells"][cell_name]["comparison"] = comparison
    save(results, args.out)
    print(markdown(results))
    return results


if __name__ == "__main__":
    run(parse_args())
