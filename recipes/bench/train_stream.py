"""Streaming-training benchmark: peak RSS of a short training run at two dataset sizes.

Training reads the prepared splits memory-mapped (`datasets.load_from_disk`), so its resident
memory should follow the model, the catalogue and the batch, not the number of training rows. This
script checks that: for each size in `--num-events` it writes a synthetic log with the same item
catalogue (`--num-items`, so only the log grows), prepares it with today's `prepare`, builds
chunked-ID semantic IDs, then trains the tiny preset for `--max-steps` steps in a fresh process
whose peak RSS (`ru_maxrss`) is its own. The smallest size is the baseline of the ratio column.

Generated and prepared folders are kept under `--work` and reused by later runs (preparing 10M
events in memory takes minutes); delete the folder to start over.

    nice -n 10 python recipes/bench/train_stream.py --num-events 1000000 10000000 --work /tmp/train_stream \
        --out recipes/bench/results/train_stream.json

The table it prints goes into RESULTS.md, section "Streaming training (issue 14)".

`--prepared DIR...` runs the end-to-end steps after `prepare` on folders already prepared (for
example by `data_pipeline.py --engines duckdb --keep`), each stage a fresh process: chunked-ID
semantic IDs of the whole catalogue, `--max-steps` training steps (sequences/s over the steps
after the first five, which warm up), and, on the last folder only, `evaluate_checkpoint` on
`--eval-users` sampled test users (no mix, no rerank):

    python recipes/bench/train_stream.py --prepared PREPARED_10M PREPARED_100M --work WORK --eval-users 10000

`--tokenizers-from WORK0` reuses the semantic IDs an earlier `--prepared` run saved under WORK0 (skipping the ids
stage, minutes at 4M items), `--eval-users 0` skips the evaluation, and `--baseline-commit REV` trains every folder
with REV's package (`code_at.package_at`) and with this tree's, `--repeats` times, alternating which goes first,
so that before and after come from one script:

    python recipes/bench/train_stream.py --prepared PREPARED_10M PREPARED_100M --work WORK \
        --tokenizers-from WORK0 --eval-users 0 --baseline-commit REV --repeats 2

Each training also records the kernel's page cache (`Cached` in /proc/meminfo) at its start and end: what the
process reads from the splits goes through it either way (pages of a memory map or of positional reads), and it is
the machine's, shared with every other job, not the process's.
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
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EVENTS_PER_USER = 29.5  # write_synthetic_log defaults: ~4 sessions x 6 clicks plus carts and buys


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_parts_mib() -> dict[str, float]:
    """Anonymous (heap: what grows if something is materialized) and file-backed (memory-mapped Arrow pages,
    reclaimable page cache) resident memory, from /proc/self/status."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if line.startswith(("RssAnon", "RssFile")))
    return {name: int(value.split()[0]) / 1024 for name, value in fields.items()}


def file_rss_by_source(prepared: Path, tokenizer: Path) -> dict[str, float]:
    """File-backed resident MiB by what is mapped (from /proc/self/smaps): the prepared splits' Arrow files, the rest
    of the prepared folder (id lists), the tokenizer's files, and everything else (libraries)."""
    roots = {"splits": (prepared / "splits").resolve(), "prepared, other": prepared.resolve(),
             "tokenizer": tokenizer.resolve()}
    parts = dict.fromkeys([*roots, "libraries and other"], 0.0)
    source = None
    with open("/proc/self/smaps") as handle:
        for line in handle:
            fields = line.split()
            if "-" in fields[0] and len(fields) > 4:  # a mapping's header: range, perms, offset, device, inode[, path]
                path = fields[5] if len(fields) > 5 and fields[5].startswith("/") else None
                source = None if path is None else next(
                    (name for name, root in roots.items() if path.startswith(f"{root}/")), "libraries and other")
            elif fields[0] == "Rss:" and source is not None:
                parts[source] += int(fields[1]) / 1024
    return parts


def _page_cache_mib() -> float:
    """The kernel's page cache (`Cached` in /proc/meminfo): the whole machine's, reclaimable."""
    with open("/proc/meminfo") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("Cached:")) / 1024


class PeakSampler(threading.Thread):
    """The largest anonymous and file-backed RSS seen, sampled every 20 ms (the kernel keeps only the total's)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks = _rss_parts_mib()
        self.running = True

    def run(self) -> None:
        while self.running:
            for name, value in _rss_parts_mib().items():
                self.peaks[name] = max(self.peaks[name], value)
            time.sleep(0.02)


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


def build_ids(prepared_dir: Path, tokenizer_dir: Path) -> dict[str, Any]:
    """Chunked-ID semantic IDs of a prepared folder's whole catalogue, saved as a tokenizer folder."""
    from gamer_hf.data import load_prepared
    from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids

    imports = _peak_rss_mib()
    start = time.perf_counter()
    prepared = load_prepared(prepared_dir)
    ids = build_semantic_ids(prepared.item_ids, method="cid", seed=0)
    save_semantic_ids(ids, tokenizer_dir, behaviors=prepared.metadata["behaviors"], overwrite=True)
    return {"items": len(prepared.item_ids), "seconds": time.perf_counter() - start, "import_rss_mib": imports,
            "peak_rss_mib": _peak_rss_mib()}


class StepClock:
    """Wall time of every optimizer step's end, for sequences/s without the start-up and the final evaluation; and
    the file-backed RSS by mapped source after each evaluation (the run's peak), while the splits are still mapped."""

    def __new__(cls, prepared: Path, tokenizer: Path) -> Any:
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self) -> None:
                self.ends: list[float] = []
                self.mapped: dict[str, float] = {}

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.ends.append(time.perf_counter())

            def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.mapped = file_rss_by_source(prepared, tokenizer)

        return _Clock()


MADV_DONTNEED = 4


class PageDropper:
    """After every step and evaluation batch, unmap this process's resident pages of the prepared splits' Arrow files
    (madvise MADV_DONTNEED on exactly their file mappings, listed in /proc/self/maps): the pages stay in the page
    cache, so a row read again faults them back in without disk I/O. Measures whether file-backed RSS can be bounded
    by the pages one step touches."""

    def __new__(cls, splits: Path) -> Any:
        import ctypes

        from transformers import TrainerCallback

        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        root = f"{splits.resolve()}/"

        def drop() -> None:
            with open("/proc/self/maps") as handle:
                ranges = [line.split()[0] for line in handle if line.rstrip().endswith(".arrow")
                          and line.split()[-1].startswith(root)]
            for span in ranges:
                start, end = (int(bound, 16) for bound in span.split("-"))
                if libc.madvise(start, end - start, MADV_DONTNEED):
                    raise OSError(ctypes.get_errno(), f"madvise({span}) failed")

        class _Dropper(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                drop()

            def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                drop()

        return _Dropper()


def train_once(folder: Path, max_steps: int, batch_size: int, prepared: Path | None = None,
               tokenizer: Path | None = None, drop_pages: bool = False) -> dict[str, Any]:
    """A short run of the tiny preset on one size; memory figures of this process only."""
    from gamer_hf.training import TrainArguments, train

    imports = _peak_rss_mib()
    cached = _page_cache_mib()
    sampler = PeakSampler()
    sampler.start()
    prepared, tokenizer = prepared or folder / "prepared", tokenizer or folder / "tokenizer"
    clock = StepClock(prepared, tokenizer)  # before the dropper: it reads the pages the evaluation left
    callbacks = [clock, PageDropper(prepared / "splits")] if drop_pages else [clock]
    start = time.perf_counter()
    out = folder / "model"
    result = train(TrainArguments(
        data=str(prepared), tokenizer=str(tokenizer), output_dir=str(out),
        preset="tiny", max_steps=max_steps, eval_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, max_eval_samples=500, logging_steps=max_steps,
        measure_step_time=False, overwrite_output_dir=True, disable_tqdm=True, seed=0), callbacks=callbacks)
    sampler.running = False
    sampler.join()
    warm = clock.ends[5:] if len(clock.ends) > 6 else clock.ends
    rate = batch_size * (len(warm) - 1) / (warm[-1] - warm[0]) if len(warm) > 1 else float("nan")
    return {"import_rss_mib": imports, "peak_rss_mib": _peak_rss_mib(), "peak_anon_mib": sampler.peaks["RssAnon"],
            "peak_file_mib": sampler.peaks["RssFile"], "file_mib_at_evaluation": clock.mapped,
            "seconds": time.perf_counter() - start, "global_step": result.global_step, "sequences_per_s": rate,
            "cached_mib_start": cached, "cached_mib_end": _page_cache_mib()}


def evaluate_once(folder: Path, prepared: Path, users: int) -> dict[str, Any]:
    """`evaluate_checkpoint` of the trained model on the test cases of `users` sampled users (no mix, no rerank);
    `setup_seconds` is the wall time outside the models' own (loading, the data report, sampling, counting)."""
    from gamer_hf.evaluation import EvaluateArguments, evaluate_checkpoint

    imports = _peak_rss_mib()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    report = evaluate_checkpoint(EvaluateArguments(
        model=str(folder / "model"), data=str(prepared), max_test_users=users, mix=False, rerank=False,
        out=str(folder / "evaluation")), progress=False)
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    models = {r.name: {"seconds": r.seconds, "target_ndcg10": r.target.get("NDCG@10")} for r in report.results}
    scored = sum(r.seconds for r in report.results if not r.name.startswith("GAMER+"))  # blends reuse its beams
    return {"seconds": seconds, "setup_seconds": seconds - scored, "import_rss_mib": imports,
            "peak_rss_mib": _peak_rss_mib(), "peak_anon_mib": sampler.peaks["RssAnon"],
            "peak_file_mib": sampler.peaks["RssFile"], "users": report.metadata["users"],
            "cases": report.metadata["cases"], "models": models}


def _child(stage: str, package: Path | None = None, **options: Any) -> dict[str, Any]:
    """One stage in a fresh process; `package` (`code_at.package_at`) puts a commit's gamer_hf first on its path."""
    from code_at import child_env  # a sibling script

    command = [sys.executable, __file__, "--stage", stage]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | child_env(package))
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
    base = rows[0]["train"]
    lines = ["| events | users | items | train rows | steps | train wall | peak RSS (vs smallest) | of which imports "
             "| peak anonymous (vs smallest) | peak file-backed (vs smallest) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        data, run = row["data"], row["train"]
        ratio = {key: run[key] / base[key] for key in ("peak_rss_mib", "peak_anon_mib", "peak_file_mib")}
        lines.append(f"| {data['events']:,} | {data['users']:,} | {data['items']:,} | {data['train_rows']:,} "
                     f"| {run['global_step']} | {run['seconds']:.1f} s "
                     f"| {run['peak_rss_mib']:,.0f} MiB (**{ratio['peak_rss_mib']:.2f}x**) "
                     f"| {run['import_rss_mib']:,.0f} MiB "
                     f"| {run['peak_anon_mib']:,.0f} MiB (**{ratio['peak_anon_mib']:.2f}x**) "
                     f"| {run['peak_file_mib']:,.0f} MiB ({ratio['peak_file_mib']:.2f}x) |")
    return "\n".join(lines)


def end_to_end(args: argparse.Namespace, load: float, baseline: Path | None) -> None:
    """Semantic IDs, training steps and sampled evaluation on each prepared folder; JSON after every stage.

    With a `baseline` package every repeat trains each folder with it and with this tree, alternating which
    goes first (`code_at.round_order`; the machine is shared: what counts is the ratio within a repeat)."""
    from code_at import round_order  # a sibling script

    rows = []
    for prepared in args.prepared:
        folder = Path(args.work) / Path(prepared).name
        meta = json.loads((Path(prepared) / "metadata.json").read_text())
        row: dict[str, Any] = {"prepared": prepared, "folder": folder, "train": [], "train_baseline": [],
                               "data": {"events": meta["num_events"], "users": meta["num_users"],
                                        "items": meta["num_items"], "train_rows": meta["splits"]["train"]["rows"]}}
        rows.append(row)
        row["tokenizer"] = folder / "tokenizer"
        if args.tokenizers_from:
            row["tokenizer"] = Path(args.tokenizers_from) / Path(prepared).name / "tokenizer"
            row["ids"] = {"reused": str(row["tokenizer"])}
    stages: list[tuple[dict[str, Any], str, str, dict[str, Any]]] = []
    if not args.tokenizers_from:
        stages += [(row, "ids", "ids", {}) for row in rows]
    for repeat in range(args.repeats):
        codes = ["train_baseline", "train"] if baseline else ["train"]
        for row in rows:
            train = {"max_steps": args.max_steps, "batch_size": args.batch_size, "tokenizer": row["tokenizer"],
                     "drop_mapped_pages": int(args.drop_mapped_pages)}
            for code in round_order(codes, repeat):
                stages.append((row, code, "train", {**train, "package": baseline if code == "train_baseline" else None}))
    if args.eval_users:  # the largest folder: the sizes before it are the baseline
        stages.append((rows[-1], "evaluate", "evaluate", {"eval_users": args.eval_users}))
    for row, name, stage, options in stages:
        result = _child(stage, folder=row["folder"], data=row["prepared"], **options)
        if name.startswith("train"):
            row[name].append(result | {"repeat": len(row[name])})
        else:
            row[name] = result
        if args.out:
            Path(args.out).write_text(json.dumps({"machine": _machine(load), "command": sys.argv, "rows": rows},
                                                 indent=1, default=str))
    print(f"Machine: {_machine(load)}.")
    for name in ("train_baseline", "train") if baseline else ("train",):
        for repeat in range(args.repeats):
            base = rows[0][name][repeat]
            print(f"\n{name}, repeat {repeat}:")
            for row in rows:
                run = row[name][repeat]
                print(f"  {row['data']['items']:,} items: " + ", ".join(
                    f"{key} {run[key]:,.0f} MiB ({run[key] / base[key]:.2f}x)"
                    for key in ("peak_rss_mib", "peak_anon_mib", "peak_file_mib")) +
                    f", {run['sequences_per_s']:.0f} sequences/s, page cache {run['cached_mib_start']:,.0f} -> "
                    f"{run['cached_mib_end']:,.0f} MiB; file-backed after the evaluation: " +
                    ", ".join(f"{part} {mib:,.0f} MiB" for part, mib in run.get("file_mib_at_evaluation", {}).items()))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--num-items", type=int, default=50_000, help="catalogue size, the same at every size")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", help="folder for logs, prepared data and models (kept, reused); required")
    parser.add_argument("--data-only", action="store_true", help="build the data of every size and stop")
    parser.add_argument("--out", help="also write the figures as JSON here (e.g. recipes/bench/results/train_stream.json)")
    parser.add_argument("--prepared", nargs="+", help="end to end on these prepared folders (see above)")
    parser.add_argument("--eval-users", type=int, default=10_000, help="--prepared: sampled test users (0: no evaluation)")
    parser.add_argument("--tokenizers-from", help="--prepared: reuse WORK0/<folder name>/tokenizer of an earlier run")
    parser.add_argument("--baseline-commit", help="--prepared: also train with this commit's package (code_at.py)")
    parser.add_argument("--repeats", type=int, default=1, help="--prepared: training runs per folder and code")
    parser.add_argument("--drop-mapped-pages", type=int, default=0, choices=[0, 1],
                        help="--prepared: 1 unmaps the splits' resident file pages after every step (see PageDropper)")
    parser.add_argument("--stage", choices=["data", "ids", "train", "evaluate"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.stage == "data":  # child processes: one stage of one size, JSON on stdout
        print(json.dumps(build_data(Path(args.folder), args.events, args.num_items, args.max_history)))
        return
    if args.stage == "ids":
        print(json.dumps(build_ids(Path(args.data), Path(args.folder) / "tokenizer")))
        return
    if args.stage == "train":
        data = Path(args.data) if args.data else None
        tokenizer = Path(args.tokenizer) if args.tokenizer else None
        print(json.dumps(train_once(Path(args.folder), args.max_steps, args.batch_size, data, tokenizer,
                                    bool(args.drop_mapped_pages))))
        return
    if args.stage == "evaluate":
        print(json.dumps(evaluate_once(Path(args.folder), Path(args.data), args.eval_users)))
        return
    if not args.work:
        print("train_stream.py: error: --work is required", file=sys.stderr)
        raise SystemExit(2)
    load = os.getloadavg()[0]
    if args.prepared and args.baseline_commit:
        from code_at import package_at  # a sibling script; imported here so the other stages need no git

        with tempfile.TemporaryDirectory(dir=args.work) as scratch:
            end_to_end(args, load, package_at(args.baseline_commit, Path(scratch) / "baseline"))
        return
    if args.prepared:
        end_to_end(args, load, None)
        return
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
    print(f"Machine: {_machine(load)}.\n\n{_table(rows)}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": _machine(load), "command": sys.argv, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
