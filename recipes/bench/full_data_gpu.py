"""Full-data comparison on one GPU: retail_beh_mbht, every user, history 50, within about 9 minutes.

The quality bench (`quality.py`) with a budget sized for one accelerator: all 32,690 users, prompts of
50 interactions, 5,000 seeded test cases (of 32,690; decoding all of them twice with 20 beams would
not fit, and the paired bootstrap gives the interval), 500 validation cases for ranking-based
selection, and a step budget (4 epochs, patience 2) per learned model. No wall-clock cap: the same
budget computes the same thing on any card, only the time differs, and the table states it. The
rules (MostPopular, Repeat, Repeat+popular, Repeat+learned) and GAMER's blends come from the same
cases. GAMER trains first, then TIGER, then SASRec+behavior (the slowest): a run cut
short by its time limit keeps the rows finished so far in quality.json, GAMER's first. The table it
writes names the accelerator, the budget and the total wall time next to the numbers.

Time on an H200, estimated (not yet measured; RESULTS.md "GPU throughput (bf16)" has the
arithmetic): data preparation and semantic IDs are CPU work (92 s here on one loaded core); an
augmented GAMER epoch is 64,182 rows of 204 tokens, about 10-20 s at the small preset's measured
4,000-8,000 sequences/s; SASRec+behavior trains on the card too (TrainingSettings.device).

    bash recipes/bench/gpu.sh                                   # a GPU session: this script first
    python recipes/bench/full_data_gpu.py --data-dir /path/to/data
    python recipes/bench/full_data_gpu.py --tiny --data-dir /path/to/data --device cpu   # minutes, on CPU

Outputs: quality.json / quality.md / quality.png and full_data_gpu.md in --out
(default recipes/bench/results/full_data_gpu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import quality  # noqa: E402  (beside this script: the bench this one sizes for a GPU)

DATASET = "retail_beh_mbht"
# Trained in this order (quality.run follows --models): what a time limit cuts off is SASRec+behavior first.
MODELS = ["MostPopular", "Repeat", "Repeat+popular", "Repeat+learned", "GAMER", "GAMER+mix", "GAMER+rerank", "TIGER",
          "SASRec+behavior"]
DEFAULT_OUT = HERE / "results" / "full_data_gpu"


def gpu_budget(tiny: bool = False) -> Any:
    """All users, 5,000 test cases, history 50, 4 epochs per learned model (`tiny`: a CPU smoke test)."""
    full = replace(quality.BUDGETS["small"], name="gpu_full", max_history=50, max_users=None,
                   max_validation_cases=500, max_test_cases=5000, mixer_cases=500, epochs=4, patience=2,
                   batch_size=256, sid_codebook=256)
    if not tiny:
        return full
    return replace(full, name="gpu_full-tiny", preset="tiny", max_history=10, max_users=300, max_validation_cases=60,
                   max_test_cases=60, mixer_cases=30, epochs=1, batch_size=64,
                   sid_codebook=32, num_beams=10)


def device_name(device: str) -> str:
    """The accelerator as the table names it."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"))
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench_full_data_gpu"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a small budget that runs in minutes on CPU")
    parser.add_argument("--resume", action="store_true", help="keep finished models in --out")
    parser.add_argument("--render", action="store_true",
                        help="only write full_data_gpu.md from --out/quality.json, e.g. of a run cut short")
    args = parser.parse_args(argv)
    if args.data_dir is None and not args.render:
        parser.error("give --data-dir or set GAMER_HF_DATA_DIR")
    return args


def run(args: argparse.Namespace, dataset: str = DATASET) -> dict[str, Any]:
    """Run the comparison through quality.run and write full_data_gpu.md; `dataset` lets tests swap the data."""
    budget = gpu_budget(tiny=args.tiny)
    argv = ["--datasets", dataset, "--seeds", str(args.seed), "--models", *MODELS, "--data-dir", str(args.data_dir),
            "--work-dir", str(args.work_dir), "--out", str(args.out), "--device", args.device, "--no-progress"]
    if args.resume:
        argv.append("--resume")
    start = time.perf_counter()
    results = quality.run(quality.parse_args(argv), budget)
    results["wall_seconds"] = time.perf_counter() - start
    write_table(args, results, dataset)
    return results


def write_table(args: argparse.Namespace, results: dict[str, Any], dataset: str = DATASET) -> str:
    """full_data_gpu.md: the card, the budget and the wall time above quality's tables; for results without a
    wall time (quality.json of a run stopped by its time limit), which models were left out."""
    budget = gpu_budget(tiny=args.tiny)
    done = results["runs"].get(dataset, {}).get(str(args.seed), {})
    missing = [model for model in MODELS if model not in done]
    timing = (f"total wall time {results['wall_seconds'] / 60:.1f} min including data preparation and semantic IDs"
              if "wall_seconds" in results else
              f"stopped by its time limit before {', '.join(missing) or 'writing this table'} finished")
    header = (f"{dataset}, every user, history {budget.max_history}, on {device_name(args.device)} "
              f"(budget {budget.name}: preset {budget.preset}, at most {budget.epochs} epochs of training per "
              f"learned model, seed {args.seed}); {timing}")
    text = header + "\n\n" + quality.markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".full_data_gpu.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, args.out / "full_data_gpu.md")
    print(text)
    return text


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render:
        write_table(args, json.loads((args.out / "quality.json").read_text()), DATASET)
    else:
        run(args)


if __name__ == "__main__":
    main()
