"""Streaming-training benchmark: peak RSS of a short training run at two dataset sizes.

Training reads the prepared splits memory-mapped (`datasets.load_from_disk`), so its resident
memory should follow the model, the catalogue and the batch, not the number of training rows. This
script checks that: for each size in `--num-events` it writes a synthetic log with the same item
catalogue (`--num-items`, so only the log grows), prepares it with today's `prepare`, builds
chunked-ID semantic IDs, then trains the tiny preset for `--max-steps` steps in a fresh process
whose peak RSS (`ru_maxrss`) is its own. The smallest size is the baseline of the ratio column.

Generated and prepared folders are kept under `--work` and reused by later runs (preparing 10M
events in memory takes minutes); delete the folder to start over.

    nice -n 10 python recipes/bench/train_stream.py --num-events 1000000 10000000 --work /tmp/train_stream --write-results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Streaming training (issue 14)"
EVENTS_PER_USER = 29.5  # write_synthetic_log defaults: ~4 sessions x 6 clicks plus carts and buys


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_data(folder: Path, events: int, num_items: int, max_history: int) -> dict[str, Any]:
    """Log, prepared splits and tokenizer for one size under `folder` (each reused when present)."""
    from gamer_hf.data import load_prepared, prepare, write_synthetic_log
    from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids

    start = time.perf_counter()
    log, prepared_dir, tokenizer_dir = folder / "log", folder / "prepared", folder / "tokenizer"
    if not (log / "meta.json").is_file():
        write_synthetic_log(log, max(1, round(events / EVENTS_PER_USER)), num_items, seed=0)
    if not (prepared_dir / "metadata.json").is_file():
        prepare(log, protocol="session", max_history=max_history, out=prepared_dir, progress=False)
    prepared = load_prepared(prepared_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        ids = build_semantic_ids(prepared.item_ids, method="cid", seed=0)
        save_semantic_ids(ids, tokenizer_dir, behaviors=prepared.metadata["behaviors"])
    meta = prepared.metadata
    return {"events": meta["num_events"], "users": meta["num_users"], "items": meta["num_items"],
            "train_rows": meta["splits"]["train"]["rows"], "validation_cases": meta["splits"]["validation"]["cases"],
            "seconds": time.perf_counter() - start}


def train_once(folder: Path, max_steps: int, batch_size: int) -> dict[str, Any]:
    """A short run of the tiny preset on one size; memory figures of this process only."""
    from gamer_hf.training import TrainArguments, train

    imports = _peak_rss_mib()
    start = time.perf_counter()
    out = folder / "model"
    result = train(TrainArguments(
        data=str(folder / "prepared"), tokenizer=str(folder / "tokenizer"), output_dir=str(out), preset="tiny",
        max_steps=max_steps, eval_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, max_eval_samples=500, logging_steps=max_steps,
        measure_step_time=False, overwrite_output_dir=True, disable_tqdm=True, seed=0))
    return {"import_rss_mib": imports, "peak_rss_mib": _peak_rss_mib(), "end_rss_mib": _current_rss_mib(),
            "seconds": time.perf_counter() - start, "global_step": result.global_step}


def _child(stage: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stage", stage]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{stage} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def _machine(load: float) -> str:
    return (f"{datetime.date.today().isoformat()}, CPU ({platform.processor() or platform.machine()}), "
            f"{os.cpu_count()} cores shared with other jobs (load average {load:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at the end), "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def _table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["train"]["peak_rss_mib"]
    lines = ["| events | users | items | train rows | steps | train wall | peak RSS | of which imports "
             "| RSS at the end | vs smallest |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        data, run = row["data"], row["train"]
        lines.append(f"| {data['events']:,} | {data['users']:,} | {data['items']:,} | {data['train_rows']:,} "
                     f"| {run['global_step']} | {run['seconds']:.1f} s | {run['peak_rss_mib']:,.0f} MiB "
                     f"| {run['import_rss_mib']:,.0f} MiB | {run['end_rss_mib']:,.0f} MiB "
                     f"| **{run['peak_rss_mib'] / base:.2f}x** |")
    return "\n".join(lines)


def write_section(body: str) -> None:
    """Replace (or append) only this script's section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--num-items", type=int, default=50_000, help="catalogue size, the same at every size")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", help="folder for logs, prepared data and models (kept, reused); required")
    parser.add_argument("--data-only", action="store_true", help="build the data of every size and stop")
    parser.add_argument("--write-results", action="store_true", help="update this script's section of RESULTS.md")
    parser.add_argument("--stage", choices=["data", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "data":  # child processes: one stage of one size, JSON on stdout
        print(json.dumps(build_data(Path(args.folder), args.events, args.num_items, args.max_history)))
        return
    if args.stage == "train":
        print(json.dumps(train_once(Path(args.folder), args.max_steps, args.batch_size)))
        return
    if not args.work:
        parser.error("--work is required")
    load = os.getloadavg()[0]
    rows = []
    for events in sorted(args.num_events):
        folder = Path(args.work) / f"synthetic_{events}_{args.num_items}"
        data = _child("data", folder=folder, events=events, num_items=args.num_items, max_history=args.max_history)
        rows.append({"data": data})
    if args.data_only:
        return
    for row, events in zip(rows, sorted(args.num_events)):
        folder = Path(args.work) / f"synthetic_{events}_{args.num_items}"
        row["train"] = _child("train", folder=folder, max_steps=args.max_steps, batch_size=args.batch_size)
    table = _table(rows)
    print(table)
    if args.write_results:
        command = "nice -n 10 python recipes/bench/train_stream.py " + " ".join(sys.argv[1:])
        write_section("\n\n".join([SECTION, _EXPLANATION, f"    {command}", f"Machine: {_machine(load)}.", table,
                                   _NOTES]) + "\n")


_EXPLANATION = """`recipes/bench/train_stream.py` trains the tiny preset for a few steps (batch 64, one
evaluation of 500 validation cases, the model published) on synthetic logs of two sizes that share
one 50,000-item catalogue, prepared with today's in-memory `prepare` (max_history 50); each run is
a fresh process and its peak RSS is that process's `ru_maxrss`, imports included. Training reads
the splits memory-mapped; the pages it touches count in RSS (file-backed, reclaimable)."""

_NOTES = ""

if __name__ == "__main__":
    main()
