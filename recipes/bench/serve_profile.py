"""Where a served request's time goes: the server's threads, its batches and py-spy samples, under load.

Starts the server as `serve_load.py` does (same checkpoint, same request bodies, same load client), once
batched (`--max-batch-size`) and once unbatched (`1`), drives each at `--concurrency`, and measures per
answered request:

- CPU of the load client (this process, on the same cores as the server);
- on-CPU and run-queue time of the server's event-loop thread, its decode thread and the rest
  (`/proc/PID/task/TID/schedstat`: run-queue time is waiting for a core that other processes hold);
- from the server's /metrics: the mean batch, recommend() calls per batch (beam widths and runs of
  similar history length), the wait in the batcher's queue, and the decode thread's wall time inside
  batches; that wall time minus the decode thread's on-CPU and run-queue time is time it slept inside
  a batch, which is waiting for the GIL (the event loop holds it meanwhile);
- with py-spy (`pip install py-spy`; needs ptrace rights), the event loop's CPU split by the innermost
  library of each sample (`Recommender.prepare`, pydantic, json, FastAPI, Starlette, the service's own code,
  prometheus_client, uvicorn's HTTP protocol, asyncio).

Prints a table and writes `results/serve_profile.json`.

`--sweep` instead compares batching settings under the same load: the unbatched server and the batched one
at each `--max-wait-ms`, with and without `--refill`, each at each torch thread count (`--threads`, the
servers' OMP_NUM_THREADS), a fresh server per setting and repeat, the settings interleaved (their order
rotating) over `--repeats`. Per run: the load test's figures (requests/s, latency percentiles, server CPU per
request) and the batch trace of the server's debug log (one line per micro-batch: size, queue left, the
oldest request's wait, the worker's idle time before it, decode time); throughput ratios against the unbatched
server of the same repeat; whether every answer equals the unbatched server's. Writes `results/serve_sweep.json`.

`--in-process` instead times `Recommender.run` itself on the same real requests (no server, no py-spy):
CPU ms per history alone, and in batches with and without the split into runs of similar history
length (`length_runs`), interleaved over `--rounds`; the ceiling any batching server has on this model.

    GAMER_HF_DATA_DIR=/work/shared/data python recipes/bench/serve_profile.py --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gamer_hf.errors import ConfigurationError, exit_on_user_error
from gamer_hf.serve.handler import CALL_COST_INTERACTIONS
from serve_load import DEFAULT_CLIENT, HERE, Server, build_checkpoint, drive, percentile, request_bodies, run_level

BUCKETS = (  # a sample of the event loop counts for the innermost frame that one of these names (frames from the leaf)
    ("Recommender.prepare (per-request checks, item lookup)", ("serve/handler.py",)),
    ("pydantic (validation, serialization)", ("pydantic",)),
    ("json", ("json/",)),
    ("FastAPI (request body, response model, encoder)", ("fastapi/",)),
    ("Starlette (routing, responses)", ("starlette/",)),
    ("the service's code (middleware, routes, batcher)", ("serve/app.py", "serve/batcher.py", "serve/metrics.py")),
    ("prometheus_client", ("prometheus_client",)),
    ("uvicorn HTTP protocol (httptools callbacks, writing responses)", ("uvicorn/",)),
    ("asyncio (tasks, futures, transports)", ("asyncio/",)),
)


def bucket(stack: str) -> str:
    """The bucket of a py-spy raw stack (`frame;frame;...`, root first): the innermost frame any bucket names."""
    for frame in reversed(stack.split(";")):
        for name, needles in BUCKETS:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def baseline_model(loaded: Any, commit: str) -> Any:
    """The same weights in the model code of `commit` (`code_at.model_code_at`), for an A/B in one process."""
    from code_at import model_code_at  # a sibling script; imported here so the other modes need no git

    code = model_code_at(commit)
    old = code.GamerForCausalLM(code.GamerConfig.from_dict(loaded.config.to_dict())).eval()
    old.load_state_dict(loaded.state_dict())  # strict: the same parameters under the same names
    return old


def in_process(model: Path, work: Path, count: int, batches: list[int], rounds: int,
               call_costs: list[float], baseline_commit: str | None = None) -> dict[str, object]:
    """CPU ms per history of `Recommender.run`: one at a time; in batches of the largest of `batches` as one
    call; and in batches of each size split in runs of similar length (for each of `call_costs`, the
    split's price of one more call); with whether the batched lists equal the one-at-a-time lists. With
    `baseline_commit`, the same weights in that commit's model code alone and in runs of similar length too,
    interleaved with the others."""
    from gamer_hf.loading import load_gamer
    from gamer_hf.serve import RecommendRequest, Recommender

    bodies, _ = request_bodies(work, model, count, seed=0)
    loaded, tokenizer = load_gamer(model, device="cpu")

    def recommender(call_cost: float, lm: Any = loaded) -> Recommender:
        return Recommender(lm, tokenizer, name="p", max_history=50, call_cost=call_cost)

    ways = {"alone": (recommender(call_costs[0]), 1),
            f"batches of {max(batches)}, one call each": (recommender(float("inf")), max(batches)),
            **{f"batches of {size}, runs of similar length (call cost {cost:g})": (recommender(cost), size)
               for size in batches for cost in call_costs}}
    if baseline_commit:
        old = baseline_model(loaded, baseline_commit)
        ways[f"{baseline_commit}: alone"] = (recommender(call_costs[0], old), 1)
        ways.update({f"{baseline_commit}: batches of {size}, runs of similar length (call cost {cost:g})":
                     (recommender(cost, old), size) for size in batches for cost in call_costs})
    prepared = [ways["alone"][0].prepare(RecommendRequest(**body)) for body in bodies]
    for warm, _ in ways.values():  # warm-up (each model code builds its trie once)
        warm.run(prepared[:2])
    ms: dict[str, list[float]] = {name: [] for name in ways}
    lists: dict[str, list[list[str]]] = {}
    for round_ in range(rounds):
        for name in sorted(ways, reverse=bool(round_ % 2)):
            recommender, size = ways[name]
            start = time.process_time()
            answers = [a for i in range(0, len(prepared), size) for a in recommender.run(prepared[i : i + size])]
            ms[name].append(1000 * (time.process_time() - start) / len(prepared))
            lists[name] = [[item.item_id for item in answer.items] for answer in answers]
    def alone_of(name: str) -> str:  # the same model code's one-at-a-time way
        return f"{baseline_commit}: alone" if baseline_commit and name.startswith(f"{baseline_commit}: ") else "alone"

    speedup = {name: [a / b for a, b in zip(ms[alone_of(name)], v)] for name, v in ms.items()}
    return {"histories": len(prepared), "rounds": rounds,
            "cpu_ms_per_history": {name: {"median": round(statistics.median(v), 1), "min": round(min(v), 1),
                                          "max": round(max(v), 1)} for name, v in ms.items()},
            "alone_over_way_per_round": {name: {"median": round(statistics.median(v), 2), "min": round(min(v), 2),
                                                "max": round(max(v), 2)} for name, v in speedup.items()},
            "same_lists_as_alone": {name: lists[name] == lists["alone"] for name in ways}}


def find_py_spy() -> str | None:
    """py-spy on PATH, or beside this Python (a venv's bin/ need not be on PATH)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def profile_server(model: Path, bodies: list[Any], max_batch_size: int, concurrency: int, client: str,
                   rate: int, device: str) -> dict[str, Any]:
    """One server under `concurrency` clients: per answered request, where its CPU and wall time went."""
    server = Server(model, max_batch_size, 5.0, device)
    py_spy = find_py_spy() if rate else None
    try:
        asyncio.run(drive(server.url, bodies[:16], 8, 60, client))  # warm the connections and the allocator
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "samples.txt"
            spy = py_spy and subprocess.Popen(
                [py_spy, "record", "--rate", str(rate), "--format", "raw", "--output", str(raw),
                 "--pid", str(server.process.pid), "--threads", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if spy:
                time.sleep(2)
            before, threads_before = server.metrics(), server.thread_times()
            answers, seconds, client_cpu = asyncio.run(drive(server.url, bodies, concurrency, 300, client))
            after, threads_after = server.metrics(), server.thread_times()
            loop_samples: collections.Counter[str] = collections.Counter()
            if spy:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
                for line in raw.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if stack.startswith(f"thread ({server.process.pid})"):
                        loop_samples[bucket(stack)] += int(count)
    finally:
        server.stop()
    n = len(answers)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    used = {tid: (cpu - threads_before.get(tid, (0, 0))[0], queued - threads_before.get(tid, (0, 0))[1])
            for tid, (cpu, queued) in threads_after.items()}
    loop = used.pop(server.process.pid)
    decode_tid = max(used, key=lambda tid: used[tid][0])  # the one decode thread does almost all the rest
    decode = used.pop(decode_tid)
    batches = delta["gamer_batch_size_count"] or 1
    decode_wall = delta["gamer_batch_decode_seconds_sum"]
    loop_total = sum(loop_samples.values())
    per = lambda seconds: round(1000 * seconds / n, 2)  # noqa: E731 - ms per answered request
    return {
        "max_batch_size": max_batch_size, "concurrency": concurrency, "client": client, "requests": n,
        "errors": sum(status != 200 for status, _, _ in answers.values()), "seconds": round(seconds, 2),
        "requests_per_s": round(n / seconds, 2), "wall_ms_per_request": per(seconds),
        "client_cpu_ms": per(client_cpu),
        "loop_cpu_ms": per(loop[0]), "loop_runqueue_ms": per(loop[1]),
        "decode_cpu_ms": per(decode[0]), "decode_runqueue_ms": per(decode[1]),
        "other_threads_cpu_ms": per(sum(cpu for cpu, _ in used.values())),
        "decode_wall_ms": per(decode_wall),
        "decode_gil_wait_ms": per(max(0.0, decode_wall - decode[0] - decode[1])),
        "decode_idle_share": round(1 - decode_wall / seconds, 3),
        "mean_batch": round(delta["gamer_batch_size_sum"] / batches, 2),
        "recommend_calls_per_batch": round(delta["gamer_recommend_calls_total"] / batches, 2),
        "queue_wait_ms": round(1000 * delta["gamer_queue_wait_seconds_sum"] / max(1, delta["gamer_queue_wait_seconds_count"]), 1),
        "loop_cpu_ms_by_part": {name: per(loop[0] * count / loop_total) for name, count in loop_samples.most_common()},
        "load_avg": round(os.getloadavg()[0], 1),
    }


BATCH_LINE = re.compile(r"batch of (\d+) \(queue (\d+) at its start, (\d+) at its end\): oldest waited ([\d.]+) "
                        r"ms, worker idle ([\d.]+) ms before it, decoded in ([\d.]+) ms")
TRACE_FIELDS = ("size", "queue_at_start", "queue_at_end", "oldest_wait_ms", "idle_ms", "decode_ms")


def batch_trace(log: Path) -> list[dict[str, float]]:
    """The micro-batches the server's debug log records so far, oldest first."""
    return [dict(zip(TRACE_FIELDS, map(float, match.groups())))
            for match in BATCH_LINE.finditer(log.read_text(encoding="utf-8"))]


def trace_summary(trace: list[dict[str, float]], seconds: float) -> dict[str, Any]:
    """What a run's batches were: sizes (mean, quartiles, the first 24 in order), the queue each left behind,
    the oldest request's wait, and the worker's idle time before a batch (mean, and its share of the run; not
    counting the first batch's, which is the pause before the run)."""
    sizes = [b["size"] for b in trace]
    mean = lambda key, part=trace: round(statistics.mean(b[key] for b in part), 1) if part else 0.0  # noqa: E731
    return {"batches": len(trace), "mean_batch": mean("size"),
            "batch_quartiles": [percentile(sizes, q) for q in (0.25, 0.5, 0.75)] if sizes else [],
            "first_batches": [int(size) for size in sizes[:24]], "queue_at_start": mean("queue_at_start"),
            "queue_at_end": mean("queue_at_end"), "oldest_wait_ms": mean("oldest_wait_ms"),
            "idle_ms": mean("idle_ms", trace[1:]), "decode_ms": mean("decode_ms"),
            "idle_share": round(sum(b["idle_ms"] for b in trace[1:]) / 1000 / seconds, 3)}


def sweep(model: Path, bodies: list[Any], waits: list[float], threads: list[int], refills: list[bool],
          repeats: int, concurrency: int, max_seconds: float, client: str, device: str) -> dict[str, Any]:
    """Every setting, interleaved over `repeats` (a fresh server each time); see the module's docstring."""
    settings = [{"name": f"unbatched t{t}", "max_batch_size": 1, "max_wait_ms": 5.0, "refill": False, "threads": t}
                for t in threads]
    settings += [{"name": f"batched w{w:g} {'refill' if r else 'no-refill'} t{t}", "max_batch_size": 64,
                  "max_wait_ms": w, "refill": r, "threads": t} for t, w, r in itertools.product(threads, waits, refills)]
    runs: list[dict[str, Any]] = []
    reference: dict[int, list[str]] = {}  # the unbatched server's lists (the first run of it), by request
    mismatched = compared = 0
    for repeat in range(repeats):
        shift = repeat * len(settings) // max(1, repeats)
        for setting in settings[shift:] + settings[:shift]:
            with tempfile.TemporaryDirectory() as tmp:
                log = Path(tmp) / "server.log"
                server = Server(model, setting["max_batch_size"], setting["max_wait_ms"], device,
                                threads=setting["threads"], flags=("--refill", str(setting["refill"]).lower()), log=log)
                try:
                    asyncio.run(drive(server.url, bodies[:16], 8, 60, client))  # warm the connections and allocator
                    skip, threads_before = len(batch_trace(log)), server.thread_times()
                    result, answers = run_level(server, setting["name"], bodies, concurrency, repeat, max_seconds,
                                                client)
                    threads_after, trace = server.thread_times(), batch_trace(log)[skip:]
                finally:
                    server.stop()
            lists = {i: [item["item_id"] for item in answer["items"]] for i, answer in answers.items()}
            if setting["max_batch_size"] == 1 and not reference:
                reference = lists
            else:
                shared = set(lists) & set(reference)
                compared += len(shared)
                mismatched += sum(lists[i] != reference[i] for i in shared)
            used = {tid: cpu - threads_before.get(tid, (0.0, 0.0))[0] for tid, (cpu, _) in threads_after.items()}
            loop_cpu = used.pop(server.process.pid, 0.0)
            runs.append({**setting, "repeat": repeat, **asdict(result),
                         "loop_cpu_ms": round(1000 * loop_cpu / max(1, result.requests), 2),
                         "other_threads_cpu_ms": round(1000 * sum(used.values()) / max(1, result.requests), 2),
                         "trace": trace_summary(trace, result.seconds)})
            print(json.dumps(runs[-1]), flush=True)
    return {"concurrency": concurrency, "count": len(bodies), "repeats": repeats, "client": client,
            "answers_compared_with_unbatched": compared, "answers_different": mismatched,
            "summary": sweep_summary(runs, [s["name"] for s in settings]), "runs": runs}


def interval(values: list[float], digits: int = 2) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def sweep_summary(runs: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Per setting, over the repeats: requests/s and its ratio to the unbatched server of the same repeat (same
    threads, and one thread), latency, batches, idle time and CPU."""
    by = {(r["name"], r["repeat"]): r for r in runs}
    rows = []
    for name in names:
        mine = [r for r in runs if r["name"] == name]
        ratio = lambda base: [r["requests_per_s"] / by[(base, r["repeat"])]["requests_per_s"]  # noqa: E731
                              for r in mine if (base, r["repeat"]) in by]
        rows.append({
            "name": name, "requests_per_s": interval([r["requests_per_s"] for r in mine], 1),
            "over_unbatched_same_threads": interval(ratio(f"unbatched t{mine[0]['threads']}")),
            "over_unbatched_t1": interval(ratio("unbatched t1")) if ("unbatched t1", 0) in by else None,
            "p50_ms": statistics.median(r["p50_ms"] for r in mine), "p99_ms": statistics.median(r["p99_ms"] for r in mine),
            "p99_over_p50": interval([r["p99_ms"] / r["p50_ms"] for r in mine]),
            "mean_batch": interval([r["trace"]["mean_batch"] for r in mine], 1),
            "calls_per_batch": statistics.median(r["calls_per_batch"] for r in mine),
            "oldest_wait_ms": statistics.median(r["trace"]["oldest_wait_ms"] for r in mine),
            "idle_ms_before_batch": statistics.median(r["trace"]["idle_ms"] for r in mine),
            "idle_share": statistics.median(r["trace"]["idle_share"] for r in mine),
            "server_cpu_ms": interval([r["server_cpu_ms"] for r in mine], 1),
            "errors": sum(r["errors"] for r in mine), "requests": sum(r["requests"] for r in mine),
            "load_avg": [r["load_avg"] for r in mine],
        })
    return rows


def sweep_table(summary: list[dict[str, Any]]) -> str:
    fmt = lambda v: f"{v['median']:g} ({v['min']:g}-{v['max']:g})" if v else ""  # noqa: E731
    lines = ["| setting | requests/s | / unbatched, same threads | / unbatched t1 | p50 ms | p99 ms | p99/p50 | mean batch "
             "| calls per batch | oldest wait ms | worker idle ms before a batch (share) | server CPU ms/request "
             "| errors | load average |", "|---|" + "---:|" * 13]
    for row in summary:
        lines.append(f"| {row['name']} | {fmt(row['requests_per_s'])} | {fmt(row['over_unbatched_same_threads'])} | "
                     f"{fmt(row['over_unbatched_t1'])} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
                     f"{fmt(row['p99_over_p50'])} | {fmt(row['mean_batch'])} | {row['calls_per_batch']:g} | "
                     f"{row['oldest_wait_ms']:.0f} | {row['idle_ms_before_batch']:.1f} ({row['idle_share']:.0%}) | "
                     f"{fmt(row['server_cpu_ms'])} | {row['errors']} / {row['requests']} | "
                     f"{' / '.join(f'{v:.1f}' for v in row['load_avg'])} |")
    return "\n".join(lines)


ROWS = (  # (label, key) of the breakdown table, ms per answered request unless said
    ("requests/s", "requests_per_s"), ("wall per request (1 / throughput)", "wall_ms_per_request"),
    ("mean batch", "mean_batch"), ("recommend() calls per batch", "recommend_calls_per_batch"),
    ("wait in the batcher's queue (ms, mean per request)", "queue_wait_ms"),
    ("decode thread: wall inside batches", "decode_wall_ms"), ("decode thread: on CPU", "decode_cpu_ms"),
    ("decode thread: waiting for a core", "decode_runqueue_ms"),
    ("decode thread: asleep inside a batch (GIL)", "decode_gil_wait_ms"),
    ("decode thread idle (share of the run)", "decode_idle_share"),
    ("event loop: on CPU", "loop_cpu_ms"), ("event loop: waiting for a core", "loop_runqueue_ms"),
    ("other server threads: on CPU", "other_threads_cpu_ms"), ("load client: CPU", "client_cpu_ms"),
    ("load average", "load_avg"),
)


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| per answered request | " + " | ".join(f"max batch {r['max_batch_size']}, c={r['concurrency']}, "
                                                     f"{r['client']}" for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(f"{r[key]:g}" for r in runs) + " |" for label, key in ROWS]
    parts = sorted({part for r in runs for part in r["loop_cpu_ms_by_part"]})
    lines += [f"| event loop CPU: {part} | " + " | ".join(f"{r['loop_cpu_ms_by_part'].get(part, 0):g}" for r in runs)
              + " |" for part in parts]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=HERE / "results" / "serve_load_work")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"),
                        help="the shared datasets (without --model: the checkpoint is built from there)")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--max-batch-size", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--client", nargs="+", default=[DEFAULT_CLIENT], choices=["aiohttp", "httpx"])
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second (0: no py-spy)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--in-process", action="store_true", help="time Recommender.run, no server (see above)")
    parser.add_argument("--sweep", action="store_true", help="compare batching settings under load (see above)")
    parser.add_argument("--max-wait-ms", type=float, nargs="+", default=[5.0, 20.0, 50.0], help="--sweep")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="--sweep: servers' OMP_NUM_THREADS")
    parser.add_argument("--refill", choices=["on", "off"], nargs="+", default=["off", "on"], help="--sweep")
    parser.add_argument("--repeats", type=int, default=3, help="--sweep")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="--sweep: time cap of one run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32], help="--in-process: batch sizes")
    parser.add_argument("--call-costs", type=float, nargs="+", default=[CALL_COST_INTERACTIONS],
                        help="--in-process: length_runs' price of one more recommend() call, in interactions")
    parser.add_argument("--baseline-commit", default=None,
                        help="--in-process: also time the model code of this commit (same weights), interleaved")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/serve_profile.json (results/serve_sweep.json with --sweep)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with exit_on_user_error("serve_profile.py"):
        if args.rate and not (args.in_process or args.sweep) and find_py_spy() is None:  # before any training
            raise ConfigurationError("the profile samples with py-spy: pip install py-spy (or --rate 0)")
        profile(args)


def profile(args: argparse.Namespace) -> None:
    """The mode the flags ask for: --in-process, --sweep, or the py-spy profile of each server."""
    model = args.model or build_checkpoint(args.work, args.train_steps, 50, args.data_dir)
    if args.in_process:
        print(json.dumps(in_process(model, args.work, args.count, args.batch_sizes, args.rounds, args.call_costs,
                                    args.baseline_commit)))
        return
    if args.sweep:
        bodies, _ = request_bodies(args.work, model, args.count, seed=0)
        report = sweep(model, bodies, args.max_wait_ms, args.threads, [r == "on" for r in args.refill], args.repeats,
                       args.concurrency, args.max_seconds, args.client[0], args.device)
        print(sweep_table(report["summary"]))
        print(f"answers equal to the unbatched server's: {report['answers_compared_with_unbatched'] - report['answers_different']}"
              f" of {report['answers_compared_with_unbatched']}")
        (args.out or HERE / "results" / "serve_sweep.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return
    bodies, _ = request_bodies(args.work, model, args.count, seed=0)
    runs = []
    for client in args.client:
        for size in args.max_batch_size:
            runs.append(profile_server(model, bodies, size, args.concurrency, client, args.rate, args.device))
            print(json.dumps(runs[-1]), flush=True)
    print(table(runs))
    (args.out or HERE / "results" / "serve_profile.json").write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
