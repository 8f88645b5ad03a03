"""Where a served request's time goes: py-spy samples of `gamer-hf serve` under load, by part of the work.

Starts the server as `serve_load.py` does (same checkpoint, same request bodies), drives it at one
concurrency, and samples the server process with py-spy (`pip install py-spy`; needs ptrace rights)
for the whole run. Each sample is put in one bucket: the model's prefill / decode steps / encoding
histories / the rest of `recommend()`, or on the event loop: HTTP parsing, pydantic validation and
JSON, `Recommender.prepare`, metrics, uvicorn/starlette, idle waiting. Also prints the load client's
own CPU per request (it runs in this process, on the same cores). Prints a table; writes nothing.

`--in-process` instead times `Recommender.run` itself on the same real requests (no server, no py-spy):
CPU ms per history alone, and in batches with and without the split into runs of similar history
length (`length_runs`), interleaved over `--rounds`; the ceiling any batching server has on this model.

    GAMER_HF_DATA_DIR=/work/shared/data nice -n 10 python recipes/bench/serve_profile.py --max-batch-size 64
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from serve_load import HERE, Server, build_checkpoint, drive, request_bodies

BUCKETS = (  # first match wins; matched against the whole stack of a sample
    ("model: prefill", ("_prefill",)),
    ("model: decode steps", ("_decode_step",)),
    ("model: encode histories", ("encode_histories",)),
    ("model: rest of recommend()", ("beam_search_items", "generation_gamer.py")),
    ("loop: Recommender.prepare", ("prepare (",)),
    ("server: Recommender.run (grouping, responses)", ("serve/handler.py",)),
    ("loop: pydantic validation / JSON", ("pydantic", "json", "jsonable_encoder", "serialize_response")),
    ("loop: HTTP parsing (httptools/h11)", ("httptools", "h11")),
    ("loop: metrics", ("prometheus_client",)),
    ("loop: starlette/fastapi routing", ("starlette", "fastapi")),
    ("loop: uvicorn / asyncio", ("uvicorn", "asyncio")),
)


def bucket(stack: str) -> str:
    for name, needles in BUCKETS:
        if any(needle in stack for needle in needles):
            return name
    return "other"


def in_process(model: Path, work: Path, count: int, batch: int, rounds: int) -> dict[str, object]:
    """CPU ms per history of `Recommender.run`: one at a time, in batches of `batch` as one call, and split in
    runs of similar length; with whether the batched lists equal the one-at-a-time lists."""
    import statistics

    from gamer_hf.loading import load_gamer
    from gamer_hf.serve import RecommendRequest, Recommender

    bodies, _ = request_bodies(work, model, count, seed=0)
    loaded, tokenizer = load_gamer(model, device="cpu")
    ways = {"alone": (Recommender(loaded, tokenizer, name="p", max_history=50), 1),
            "one call per batch": (Recommender(loaded, tokenizer, name="p", max_history=50, call_cost=float("inf")), batch),
            "runs of similar length": (Recommender(loaded, tokenizer, name="p", max_history=50), batch)}
    prepared = [ways["alone"][0].prepare(RecommendRequest(**body)) for body in bodies]
    ways["alone"][0].run(prepared[:2])  # warm-up
    ms: dict[str, list[float]] = {name: [] for name in ways}
    lists: dict[str, list[list[str]]] = {}
    for round_ in range(rounds):
        for name in sorted(ways, reverse=bool(round_ % 2)):
            recommender, size = ways[name]
            start = time.process_time()
            answers = [a for i in range(0, len(prepared), size) for a in recommender.run(prepared[i : i + size])]
            ms[name].append(1000 * (time.process_time() - start) / len(prepared))
            lists[name] = [[item.item_id for item in answer.items] for answer in answers]
    return {"histories": len(prepared), "batch": batch, "rounds": rounds,
            "cpu_ms_per_history": {name: {"median": round(statistics.median(v), 1), "min": round(min(v), 1),
                                          "max": round(max(v), 1)} for name, v in ms.items()},
            "same_lists_as_alone": {name: lists[name] == lists["alone"] for name in ways}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=HERE / "results" / "serve_load_work")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--in-process", action="store_true", help="time Recommender.run, no server (see above)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    if args.in_process:
        model = args.model or build_checkpoint(args.work, args.train_steps, 50)
        print(json.dumps(in_process(model, args.work, args.count, args.concurrency, args.rounds)))
        return
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("serve_profile.py: pip install py-spy")
    model = args.model or build_checkpoint(args.work, args.train_steps, 50)
    bodies, _ = request_bodies(args.work, model, args.count, seed=0)
    server = Server(model, args.max_batch_size, 5.0, args.device)
    try:
        asyncio.run(drive(server.url, bodies[:16], 8, 60))  # warm the connections and the allocator
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "samples.txt"
            spy = subprocess.Popen([py_spy, "record", "--rate", str(args.rate), "--format", "raw", "--output", str(raw),
                                    "--pid", str(server.process.pid), "--threads", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
            answers, seconds, client_cpu = asyncio.run(drive(server.url, bodies, args.concurrency, 300))
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            counts: collections.Counter[str] = collections.Counter()
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                counts[bucket(stack)] += int(count)
    finally:
        server.stop()
    total = sum(counts.values()) or 1
    print(f"max batch {args.max_batch_size}, concurrency {args.concurrency}: {len(answers)} requests in "
          f"{seconds:.1f} s ({len(answers) / seconds:.2f}/s); client CPU {1000 * client_cpu / len(answers):.1f} ms "
          f"per request; {total} samples of the server's busy threads")
    print("| part | share of samples |\n|---|---:|")
    for name, count in counts.most_common():
        print(f"| {name} | {100 * count / total:.1f}% |")


if __name__ == "__main__":
    main()
