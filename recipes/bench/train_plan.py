"""What the training plan promises and what max_eval_samples saves, on a real log with a large validation split.

Two runs of the same schedule, same seed and data: validation on the whole split
(`max_eval_samples=0`, the behaviour before the option) and on the default fixed sample. The runs
take the same steps (the warm-up measurement leaves training unchanged), so at every evaluation
both score the same weights: the gap between their losses is the sample's error. Reported:
- evaluation seconds per evaluation, whole split vs sample (ratio), and each run's share of
  training wall time spent evaluating;
- the plan's estimate against the Trainer's measured train_runtime (ratio, per run);
- the sampled validation loss relative to the whole split's, per evaluation.

    GAMER_HF_DATA_DIR=/work/shared/data python recipes/bench/train_plan.py [--quick] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gamer_hf.data.prepare import load_prepared, prepare
from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
from gamer_hf.training import TrainArguments, train
from gamer_hf.training.eval_sample import DEFAULT_MAX_EVAL_SAMPLES

PROTOCOLS = {"retailrocket_cml": "session", "taobao_cml_partial": "session", "retail_beh_mbht": "loo"}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train_plan.json"


def setup(name: str, data_dir: Path, work: Path, max_history: int) -> tuple[Path, Path]:
    """Prepared data and a chunked-ID tokenizer (timing does not depend on which codes items get)."""
    prepared_dir, tokenizer_dir = work / name / "prepared", work / name / "tokenizer"
    if not (prepared_dir / "metadata.json").is_file():
        prepare(data_dir / name, protocol=PROTOCOLS[name], max_history=max_history, out=prepared_dir, progress=False)
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        prepared = load_prepared(prepared_dir)
        semantic_ids = build_semantic_ids(prepared.item_ids, method="cid", codebook_size=256, seed=0)
        save_semantic_ids(semantic_ids, tokenizer_dir, behaviors=prepared.metadata["behaviors"])
    return prepared_dir, tokenizer_dir


def one_run(prepared: Path, tokenizer: Path, out: Path, args: argparse.Namespace, max_eval_samples: int) -> dict:
    result = train(TrainArguments(
        data=str(prepared), tokenizer=str(tokenizer), output_dir=str(out), preset=args.preset,
        max_history=args.max_history, max_steps=args.steps, eval_steps=args.eval_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        early_stopping_patience=0, max_eval_samples=max_eval_samples, overwrite_output_dir=True,
        disable_tqdm=True, logging_steps=args.steps, seed=0,
    ))
    evaluations = [row for row in result.log_history if "eval_loss" in row]
    runtime = next(row["train_runtime"] for row in result.log_history if "train_runtime" in row)
    eval_seconds = sum(row["eval_runtime"] for row in evaluations)
    return {
        "validation_cases": result.plan.validation_cases, "validation_split_cases": result.plan.validation_split_cases,
        "train_runtime": runtime, "estimated_seconds": result.plan.estimated_seconds,
        "estimate_over_actual": result.plan.estimated_seconds / runtime,
        "seconds_per_evaluation": eval_seconds / len(evaluations), "evaluation_share": eval_seconds / runtime,
        "eval_losses": [row["eval_loss"] for row in evaluations],
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(runs: list[dict[str, dict]]) -> dict[str, Any]:
    whole, sample = [run["whole"] for run in runs], [run["sample"] for run in runs]
    gaps = [s / w - 1 for run in runs for s, w in zip(run["sample"]["eval_losses"], run["whole"]["eval_losses"])]
    return {
        "evaluation_seconds_sample_over_whole": _spread(
            [s["seconds_per_evaluation"] / w["seconds_per_evaluation"] for s, w in zip(sample, whole)]),
        "train_runtime_sample_over_whole": _spread([s["train_runtime"] / w["train_runtime"] for s, w in zip(sample, whole)]),
        "evaluation_share_whole": _spread([w["evaluation_share"] for w in whole]),
        "evaluation_share_sample": _spread([s["evaluation_share"] for s in sample]),
        "estimate_over_actual": _spread([r["estimate_over_actual"] for r in whole + sample]),
        "sample_loss_relative_gap": _spread(gaps),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="retail_beh_mbht", choices=sorted(PROTOCOLS))
    parser.add_argument("--data_dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench_train_plan"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--max_history", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval_steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="retailrocket_cml, tiny preset, 4 steps, 1 repeat")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("set GAMER_HF_DATA_DIR or pass --data_dir")
    if args.quick:
        args.dataset, args.preset, args.steps, args.eval_steps, args.repeats = "retailrocket_cml", "tiny", 4, 2, 1
        args.max_history = 20
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    prepared, tokenizer = setup(args.dataset, args.data_dir, args.work, args.max_history)
    runs = []
    for repeat in range(args.repeats):
        runs.append({name: one_run(prepared, tokenizer, args.work / f"model-{name}", args, limit)
                     for name, limit in (("whole", 0), ("sample", DEFAULT_MAX_EVAL_SAMPLES))})
        print(json.dumps({"repeat": repeat, **runs[-1]}), flush=True)
    report = {
        "dataset": args.dataset, "preset": args.preset, "max_history": args.max_history, "steps": args.steps,
        "eval_steps": args.eval_steps, "batch_size": args.batch_size, "max_eval_samples": DEFAULT_MAX_EVAL_SAMPLES,
        "threads": torch.get_num_threads(), "machine": platform.machine(), "runs": runs, "summary": summarise(runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    sys.exit(main())
