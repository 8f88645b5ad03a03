"""Load test of `gamer-hf serve`: micro-batched vs unbatched server, same checkpoint, same requests.

Starts the real server on 127.0.0.1 (a subprocess, as a user runs it) with a trained small-preset
checkpoint over retailrocket_cml's catalogue (30k items; built here in a few minutes when --model is
not given), and drives it with an async HTTP client at each concurrency for a bounded count and
time. Each configuration (`--max-batch-size 64` and `1`) runs `--repeats` times, interleaved, so
the ratio of the two is measured under the same machine load. Also: a run with 10% malformed
requests mixed in, whose good requests must get the same answers and no errors. Figures go to
RESULTS.md ("Serving") and results/serve_load.json.

    GAMER_HF_DATA_DIR=/work/shared/data python recipes/bench/serve_load.py   # pip install -e '.[bench]'
    python recipes/bench/serve_load.py --model runs/gamer --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from gamer_hf.errors import ConfigurationError, exit_on_user_error

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
SECTION = "## Serving"
SUBSECTION = "### Load test with intervals over repeats (serve_load.py)"  # the part a rerun replaces
DEFAULT_CLIENT = "aiohttp" if importlib.util.find_spec("aiohttp") else "httpx"


# ----- the checkpoint -----
def build_checkpoint(work: Path, steps: int, max_history: int, data_dir: Path | None) -> Path:
    """Small preset on retailrocket_cml's catalogue (CID semantic IDs: no embedding step), trained for `steps`
    (one evaluation at the end) or, with steps=0, left at its seeded initialisation: serving does the same
    work either way (fixed beams, fixed code steps), which is what this benchmark measures."""
    from gamer_hf import GamerConfig, GamerForCausalLM
    from gamer_hf.data.prepare import load_prepared, prepare
    from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
    from gamer_hf.training import TrainArguments, train

    model_dir = work / (f"model_{steps}_steps" if steps else "model_init")
    if (model_dir / "model.safetensors").is_file():
        return model_dir
    if data_dir is None:  # checked here, not at parse time: a checkpoint already built under `work` needs no data
        raise ConfigurationError("give --data-dir or set GAMER_HF_DATA_DIR (the shared datasets), or pass --model")
    if not (work / "prepared").is_dir():
        events = Path(data_dir) / "retailrocket_cml" / "events.csv.gz"
        prepare(events, protocol="session", out=work / "prepared", max_history=max_history, progress=False)
    if not (work / "tokenizer").is_dir():
        prepared = load_prepared(work / "prepared")
        semantic_ids = build_semantic_ids(prepared.item_ids, method="cid", codebook_size=64, seed=0)
        save_semantic_ids(semantic_ids, work / "tokenizer", behaviors=prepared.metadata["behaviors"])
    if steps == 0:
        from gamer_hf import GamerTokenizerFast

        tokenizer = GamerTokenizerFast.from_pretrained(work / "tokenizer")
        torch.manual_seed(0)
        GamerForCausalLM(GamerConfig.from_preset("small", tokenizer=tokenizer)).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        return model_dir
    result = train(TrainArguments(
        data=str(work / "prepared"), tokenizer=str(work / "tokenizer"), output_dir=str(model_dir), preset="small",
        max_steps=steps, eval_steps=steps, per_device_train_batch_size=64, per_device_eval_batch_size=256,
        learning_rate=1e-3, max_history=max_history, seed=0, save_total_limit=1, disable_tqdm=True,
        early_stopping_patience=0, overwrite_output_dir=True,
    ))
    return Path(result.checkpoint_dir)


def request_bodies(work: Path, model_dir: Path, count: int, seed: int) -> tuple[list[dict[str, Any]], int]:
    """Real users' histories (test split when prepared here), each asking for the top-10 under the target behavior;
    and the catalogue size."""
    from gamer_hf.loading import load_gamer

    _, tokenizer = load_gamer(model_dir, device="cpu")
    rng = random.Random(seed)
    prepared = work / "prepared"
    if prepared.is_dir():
        from gamer_hf.data.prepare import load_prepared

        cases = load_prepared(prepared).splits["test"]
        histories = [list(map(list, zip(c["history_behaviors"], c["history_items"]))) for c in cases]
        histories = [[p for p in h if p[1] in tokenizer.item_index] for h in histories]
        histories = [h for h in histories if h]
    else:  # a given checkpoint: random histories over its catalogue
        items, behaviors = tokenizer.item_ids, list(tokenizer.behaviors)
        histories = [[[rng.choice(behaviors), rng.choice(items)] for _ in range(rng.randint(1, 30))]
                     for _ in range(count)]
    rng.shuffle(histories)
    bodies = [{"history": histories[i % len(histories)], "behavior": tokenizer.target_behavior, "top_k": 10}
              for i in range(count)]
    return bodies, len(tokenizer.item_index)


# ----- the server -----
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`gamer-hf serve` in a subprocess, ready when constructed. `threads`: its OMP_NUM_THREADS (default: this
    process's, else 1); `flags`: more serve flags; `log`: a file for its stderr, at `--log-level debug` (one line
    per micro-batch), instead of a pipe read only when it fails."""

    def __init__(self, model: Path, max_batch_size: int, max_wait_ms: float, device: str, threads: int | None = None,
                 flags: tuple[str, ...] = (), log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        gamer_hf = Path(sys.executable).with_name("gamer-hf")
        self.log = log
        stderr = log.open("w") if log else subprocess.PIPE
        self.process = subprocess.Popen(
            [str(gamer_hf), "serve", "--model", str(model), "--port", str(self.port), "--device", device,
             "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms),
             "--log-level", "debug" if log else "warning", *flags],
            env={**os.environ, "OMP_NUM_THREADS": str(threads or os.environ.get("OMP_NUM_THREADS", "1"))},
            stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
        if log:
            stderr.close()  # the server holds its own descriptor
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                output = log.read_text() if log else self.process.stderr.read()
                raise SystemExit(f"server exited with {self.process.returncode}: {output[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server not ready after 300 s")
            time.sleep(0.2)

    def metrics(self) -> dict[str, float]:
        """The server's unlabelled samples (batch sizes, queue waits, recommend() calls), from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}

    def thread_times(self) -> dict[int, tuple[float, float]]:
        """Seconds on a CPU and waiting in the run queue (for a core other processes hold) so far, per thread."""
        times = {}
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                on_cpu, queued, _ = (task / "schedstat").read_text().split()
            except OSError:  # the thread ended meanwhile
                continue
            times[int(task.name)] = (int(on_cpu) / 1e9, int(queued) / 1e9)
        return times

    def cpu_seconds(self) -> float:
        return sum(on_cpu for on_cpu, _ in self.thread_times().values())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


# ----- the load -----
@dataclass
class LevelResult:
    config: str
    concurrency: int
    repeat: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_batch: float
    calls_per_batch: float  # recommend() calls per micro-batch (beam widths, runs of similar history length)
    queue_wait_ms: float  # mean wait of a request for its micro-batch to start
    errors: int
    client_cpu_ms: float  # the load client's own CPU per request (it shares the machine with the server)
    server_cpu_ms: float  # the server's CPU per request, all threads: its cost whatever share of the cores it got
    load_avg: float  # 1-minute load average at the end of the level
    malformed: int = 0
    malformed_refused: int = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def drive(url: str, bodies: list[Any], concurrency: int, max_seconds: float, client: str = DEFAULT_CLIENT):
    """`concurrency` clients send `bodies` in turn until all are sent or `max_seconds` passed, over keep-alive
    connections of one session: aiohttp (the lean default), or httpx (the client of the earlier runs, ~4-8 ms
    of CPU per request on this machine, which the server's cores pay for too)."""
    answers: dict[int, tuple[int, Any, float]] = {}
    position = 0
    deadline = time.perf_counter() + max_seconds
    headers = {"content-type": "application/json"}
    if client == "aiohttp":
        import aiohttp  # the `bench` extra

        session: Any = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                             timeout=aiohttp.ClientTimeout(total=120))

        async def post(content: str) -> tuple[int, Any]:
            async with session.post(f"{url}/v1/recommend", data=content, headers=headers) as response:
                return response.status, json.loads(await response.read())
        failures: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
    else:
        session = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency,
                                                                     max_keepalive_connections=concurrency))

        async def post(content: str) -> tuple[int, Any]:
            response = await session.post(f"{url}/v1/recommend", content=content, headers=headers)
            return response.status_code, response.json()
        failures = (httpx.HTTPError,)

    contents = [body if isinstance(body, str) else json.dumps(body) for body in bodies]

    async def client_loop() -> None:
        nonlocal position
        while position < len(contents) and time.perf_counter() < deadline:
            index, position = position, position + 1
            started = time.perf_counter()
            try:
                status, answer = await post(contents[index])
                answers[index] = (status, answer, time.perf_counter() - started)
            except failures as error:
                answers[index] = (0, repr(error), time.perf_counter() - started)

    async with session:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return answers, time.perf_counter() - started, time.process_time() - cpu


def run_level(server: Server, config: str, bodies: list[Any], concurrency: int, repeat: int,
              max_seconds: float, client: str, malformed: set[int] = frozenset()):
    before, server_cpu = server.metrics(), server.cpu_seconds()
    answers, seconds, client_cpu = asyncio.run(drive(server.url, bodies, concurrency, max_seconds, client))
    after, server_cpu = server.metrics(), server.cpu_seconds() - server_cpu
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    good = [i for i in answers if i not in malformed]
    latencies = [answers[i][2] * 1000 for i in good]
    batches = delta["gamer_batch_size_count"] or 1
    result = LevelResult(
        config=config, concurrency=concurrency, repeat=repeat, requests=len(answers), seconds=round(seconds, 3),
        requests_per_s=round(len(answers) / seconds, 2), p50_ms=round(percentile(latencies, 0.5), 1),
        p95_ms=round(percentile(latencies, 0.95), 1), p99_ms=round(percentile(latencies, 0.99), 1),
        mean_batch=round(delta["gamer_batch_size_sum"] / batches, 2),
        calls_per_batch=round(delta["gamer_recommend_calls_total"] / batches, 2),
        queue_wait_ms=round(1000 * delta["gamer_queue_wait_seconds_sum"] / (delta["gamer_queue_wait_seconds_count"] or 1), 1),
        errors=sum(answers[i][0] != 200 for i in good),
        client_cpu_ms=round(1000 * client_cpu / max(1, len(answers)), 2),
        server_cpu_ms=round(1000 * server_cpu / max(1, len(answers)), 2), load_avg=round(os.getloadavg()[0], 1),
        malformed=sum(i in malformed for i in answers),
        malformed_refused=sum(i in malformed and 400 <= answers[i][0] < 500 for i in answers),
    )
    print(json.dumps(asdict(result)), flush=True)
    return result, {i: answers[i][1] for i in good if answers[i][0] == 200}


def malformed_mix(bodies: list[dict[str, Any]], catalogue: int, seed: int) -> tuple[list[Any], set[int]]:
    """Every tenth request broken in one of the ways clients break them."""
    rng = random.Random(seed)
    broken = [
        lambda b: json.dumps(b)[:-3],  # truncated JSON
        lambda b: {**b, "behavior": "view"},
        lambda b: {**b, "top_k": 0},
        lambda b: {**b, "top_k": catalogue + 1},
        lambda b: {**b, "history": []},
        lambda b: {**b, "history": b["history"] + [["click", "no-such-item"]]},
        lambda b: {k: v for k, v in b.items() if k != "history"},
    ]
    mixed, bad = [], set()
    for body in bodies:
        if rng.random() < 0.1:
            bad.add(len(mixed))
            mixed.append(rng.choice(broken)(body))
        mixed.append(body)
    return mixed, bad


def same_lists(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]


# ----- the report -----
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = os.environ.get("OMP_NUM_THREADS", "-")
    return f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__}, OMP_NUM_THREADS={threads}"


def summarise(results: list[LevelResult], levels: list[int]) -> list[dict[str, Any]]:
    rows = []
    for config in ("batched", "unbatched"):
        for level in levels:
            runs = [r for r in results if r.config == config and r.concurrency == level and not r.malformed]
            if runs:
                rows.append({
                    "config": config, "concurrency": level, "runs": len(runs),
                    "rps": [r.requests_per_s for r in runs], "p50": statistics.median(r.p50_ms for r in runs),
                    "p95": statistics.median(r.p95_ms for r in runs), "p99": statistics.median(r.p99_ms for r in runs),
                    "batch": statistics.mean(r.mean_batch for r in runs), "errors": sum(r.errors for r in runs),
                    "calls": statistics.mean(r.calls_per_batch for r in runs),
                    "wait": statistics.median(r.queue_wait_ms for r in runs),
                    "requests": sum(r.requests for r in runs),
                    "client_cpu_ms": statistics.median(r.client_cpu_ms for r in runs),
                    "server_cpu_ms": statistics.median(r.server_cpu_ms for r in runs),
                    "load": [r.load_avg for r in runs],
                })
    return rows


def render(report: dict[str, Any]) -> str:
    rows = report["rows"]
    lines = [
        SUBSECTION, "",
        f"`recipes/bench/serve_load.py` ({report['date']}): `gamer-hf serve` on 127.0.0.1 with {report['model']}, "
        f"{report['catalogue']:,} items, {report['device']}; {report['machine']}. Requests: real test-split "
        f"histories, top-10 under the target behavior, 20 beams. Batched = `--max-batch-size 64 --max-wait-ms "
        f"{report['max_wait_ms']:g}`, unbatched = `--max-batch-size 1`; each level sends up to {report['count']} "
        f"requests (at most {report['max_seconds']:g} s), the two servers interleaved {report['repeats']}x under "
        "the same machine load (a shared 2-core CPU with other jobs running: figures vary run to run).", "",
        f"The load client is {report['client']} (one process, keep-alive connections).", "",
        "| server | concurrency | requests/s (runs) | p50 ms | p95 ms | p99 ms | p99/p50 | mean batch "
        "| recommend() calls per batch | queue wait ms | errors | server CPU ms/request | client CPU ms/request "
        "| load average (runs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rps = " / ".join(f"{v:.1f}" for v in row["rps"])
        lines.append(f"| {row['config']} | {row['concurrency']} | {statistics.mean(row['rps']):.1f} ({rps}) | "
                     f"{row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} | {row['p99'] / row['p50']:.1f} | "
                     f"{row['batch']:.1f} | {row['calls']:.1f} | {row['wait']:.0f} | {row['errors']} / {row['requests']} | "
                     f"{row['server_cpu_ms']:.1f} | {row['client_cpu_ms']:.1f} | "
                     f"{' / '.join(f'{v:.1f}' for v in row['load'])} |")
    ratio, cpu_ratio = report["ratio_c32"], report["cpu_ratio_c32"]
    lines += [
        "",
        f"- Throughput at concurrency 32, batched / unbatched, per interleaved repeat: "
        f"{', '.join(f'{r:.1f}x' for r in ratio)} (mean {statistics.mean(ratio):.1f}x, range {min(ratio):.1f}-"
        f"{max(ratio):.1f}x; goal >= 5x: "
        f"{'met' if min(ratio) >= 5 else 'not met'}).",
        f"- Server CPU per answered request at concurrency 32, unbatched / batched, per repeat (the throughput "
        f"ratio the two would have with the same share of the cores; the machine's load moves each server's share "
        f"from run to run): {', '.join(f'{r:.1f}x' for r in cpu_ratio)} (mean {statistics.mean(cpu_ratio):.1f}x).",
        f"- p99 / p50 of the batched server at concurrency 32: {report['tail_c32']:.1f} (goal < 4: "
        f"{'met' if report['tail_c32'] < 4 else 'not met'}).",
        f"- Failed or lost requests over all runs: {report['errors']} of {report['requests']}.",
        f"- Batched answers identical (same items, same order) to the unbatched server's for the same "
        f"histories: {report['identical'][0]} of {report['identical'][1]}.",
        f"- 10% malformed requests mixed in (concurrency 32, batched): {report['malformed']['bad']} malformed, "
        f"{report['malformed']['refused']} refused with a 4xx; the {report['malformed']['good']} good requests: "
        f"{report['malformed']['errors']} errors, {report['malformed']['same']} with the same answer as in the "
        "clean run.",
        f"- `--device cuda`: {report['cuda']}.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace this script's subsection of "## Serving" (added at the section's end the first time); the
    hand-written parts of the section stay."""
    current = RESULTS_MD.read_text(encoding="utf-8")
    if SECTION not in current:
        current = current.rstrip("\n") + "\n\n" + SECTION + "\n\n"
    head, rest = current.split(SECTION, 1)
    section, sep, after = rest.partition("\n## ")
    if SUBSECTION in section:
        before, _, old = section.partition(SUBSECTION)
        _, nested, later = old.partition("\n### ")
        section = before + text + (nested + later if nested else "")
    else:
        section = section.rstrip("\n") + "\n\n" + text
    current = head + SECTION + section.rstrip("\n") + "\n" + (sep + after if sep else "")
    tmp = RESULTS_MD.with_suffix(".md.tmp")
    tmp.write_text(current, encoding="utf-8")
    tmp.replace(RESULTS_MD)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: build one under --work)")
    parser.add_argument("--work", type=Path, default=HERE / "results" / "serve_load_work",
                        help="data, tokenizer and the trained checkpoint, reused by reruns (git-ignored)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("GAMER_HF_DATA_DIR"),
                        help="the shared datasets (the checkpoint is built on retailrocket_cml from there)")
    parser.add_argument("--train-steps", type=int, default=20,
                        help="14 steps are one epoch of retailrocket_cml (about 40 s a step on the loaded 2-core "
                             "machine); 0: untrained weights")
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--count", type=int, default=256, help="requests per concurrency level and run")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time cap per level and run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--client", default=DEFAULT_CLIENT, choices=["aiohttp", "httpx"],
                        help="the load client (default: aiohttp where installed, the `bench` extra; the report names it)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with exit_on_user_error("serve_load.py"):
        load_test(args)


def load_test(args: argparse.Namespace) -> None:
    """Batched and unbatched servers at every --concurrency level, the malformed mix, and the RESULTS section."""
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or build_checkpoint(args.work, args.train_steps, args.max_history, args.data_dir)
    bodies, catalogue = request_bodies(args.work, model, args.count, seed=0)
    results: list[LevelResult] = []
    clean: dict[str, dict[int, Any]] = {}
    malformed_report: dict[str, int] = {}
    for repeat in range(args.repeats):
        for config, batch_size in (("batched", 64), ("unbatched", 1)):
            server = Server(model, batch_size, args.max_wait_ms, args.device)
            try:
                for level in args.concurrency:
                    result, answers = run_level(server, config, bodies, level, repeat, args.max_seconds, args.client)
                    results.append(result)
                    if level == 32 and repeat == 0:
                        clean[config] = answers
                if config == "batched" and repeat == 0:
                    mixed, bad = malformed_mix(bodies, catalogue, seed=1)
                    result, answers = run_level(server, config, mixed, 32, repeat, args.max_seconds, args.client, bad)
                    results.append(result)
                    good_index = [i for i in range(len(mixed)) if i not in bad]  # -> index into bodies
                    reference = clean.get("batched", {})
                    malformed_report = {
                        "bad": result.malformed, "refused": result.malformed_refused,
                        "good": result.requests - result.malformed, "errors": result.errors,
                        "same": sum(1 for n, i in enumerate(good_index) if i in answers and n in reference
                                    and same_lists(answers[i], reference[n])),
                    }
            finally:
                exit_code = server.stop()
                if exit_code != 0:
                    print(f"warning: server exited with {exit_code} after SIGTERM", file=sys.stderr)

    rows = summarise(results, args.concurrency)
    by = {(r.config, r.concurrency, r.repeat): r for r in results if not r.malformed}
    ratio = [by[("batched", 32, k)].requests_per_s / by[("unbatched", 32, k)].requests_per_s
             for k in range(args.repeats) if ("batched", 32, k) in by and ("unbatched", 32, k) in by]
    cpu_ratio = [by[("unbatched", 32, k)].server_cpu_ms / by[("batched", 32, k)].server_cpu_ms
                 for k in range(args.repeats) if ("batched", 32, k) in by and ("unbatched", 32, k) in by]
    tail = next((row["p99"] / row["p50"] for row in rows if row["config"] == "batched" and row["concurrency"] == 32), 0)
    shared = set(clean.get("batched", {})) & set(clean.get("unbatched", {}))
    identical = sum(same_lists(clean["batched"][i], clean["unbatched"][i]) for i in shared)
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "device": args.device,
        "model": (f"`{args.model}`" if args.model is not None else
                  f"a small-preset GAMER over retailrocket_cml's catalogue, trained {args.train_steps} steps"
                  if args.train_steps else "a small-preset GAMER over retailrocket_cml's catalogue, untrained "
                  "(seeded initialisation, `--train-steps 0`)"),
        "catalogue": catalogue, "count": args.count, "max_seconds": args.max_seconds, "repeats": args.repeats,
        "max_wait_ms": args.max_wait_ms, "client": args.client, "rows": rows, "ratio_c32": ratio,
        "cpu_ratio_c32": cpu_ratio, "tail_c32": tail,
        "errors": sum(r.errors for r in results), "requests": sum(r.requests - r.malformed for r in results),
        "identical": [identical, len(shared)], "malformed": malformed_report,
        "cuda": "run on this machine" if args.device == "cuda" else
                "not run (no GPU on this machine); the same script takes `--device cuda`",
        "results": [asdict(r) for r in results],
    }
    text = render(report)
    print(text)
    if not args.no_write:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_section(text)


if __name__ == "__main__":
    main()
