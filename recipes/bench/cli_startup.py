"""Start-up time of the command line: each command in a fresh process, in interleaved rounds, as ratios
against measurements of the same rounds (the machine is shared and noisy).

The floor of `gamer-hf recommend` is what any process that runs a GAMER model pays: torch plus the
Transformers modules the model and tokenizer subclass, i.e. importing `modeling/` alone (what
`trust_remote_code=True` loads). "recommend / floor" per round says what gamer_hf adds on top: its CLI,
the checkpoint checks, loading the weights and the beam search. A profile (`python -X importtime`) of
one `recommend` run then splits the import time by top-level package.

Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX) as in an installed package, also where the
environment sets PYTHONDONTWRITEBYTECODE.

    nice -n 10 python recipes/bench/cli_startup.py --repeats 5             # prints Markdown tables
    nice -n 10 python recipes/bench/cli_startup.py --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from gamer_hf import GamerConfig, GamerForCausalLM
from gamer_hf.checkpoint import record_checksums

sys.path.insert(0, str(Path(__file__).parent))
from recommend_speed import build  # noqa: E402  (same folder: a random catalogue and model)

REPO = Path(__file__).resolve().parents[2]
HISTORY = "click:item1,cart:item2,buy:item3"
FLOOR = "floor: import modeling/ (torch + transformers)"
RECOMMEND = "gamer-hf recommend"


def small_checkpoint(folder: Path) -> Path:
    """A tiny-preset checkpoint over 1,000 items, saved as `gamer-hf train` saves one."""
    tokenizer, model = build(num_items=1000, levels=3, codebook=16, preset="tiny", seed=0)
    assert isinstance(model, GamerForCausalLM) and isinstance(model.config, GamerConfig)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_checksums(folder)
    return folder


def commands(checkpoint: Path) -> dict[str, list[str]]:
    python = sys.executable
    script = str(Path(python).with_name("gamer-hf"))  # the console script pip wrote
    return {
        "python -c pass": [python, "-c", "pass"],
        "import torch": [python, "-c", "import torch"],
        FLOOR: [python, "-c", "import modeling"],  # run from the repository root
        "import gamer_hf": [python, "-c", "import gamer_hf"],
        "gamer-hf --help": [python, script, "--help"],
        RECOMMEND: [python, script, "recommend", "--model", str(checkpoint), "--history", HISTORY, "--top_k", "5"],
    }


def child_env(pycache: Path) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    return time.perf_counter() - start


def measure(named: dict[str, list[str]], repeats: int, env: dict[str, str]) -> dict[str, list[float]]:
    """Interleaved rounds (every command once per round), so that load changes hit all alike."""
    for command in named.values():
        seconds(command, env)  # warm the file and bytecode caches
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(repeats):
        for name, command in named.items():
            times[name].append(seconds(command, env))
    return times


def import_profile(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Self import time (s) per top-level package of one run under `-X importtime`, largest first."""
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], check=True, capture_output=True, text=True,
                          env=env, cwd=REPO)
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            totals[name.split(".")[0]] += int(self_us) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def table(times: dict[str, list[float]]) -> str:
    base = statistics.median(times["python -c pass"])
    lines = ["| command | median s | min-max s | x `python -c pass` |", "|---|---:|---:|---:|"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {median / base:.1f} |")
    ratios = [rec / floor for rec, floor in zip(times[RECOMMEND], times[FLOOR])]
    lines.append(f"\n`recommend` / floor per round: median {statistics.median(ratios):.2f} "
                 f"(min-max {min(ratios):.2f}-{max(ratios):.2f})")
    return "\n".join(lines)


def profile_table(profile: dict[str, float], top: int = 10) -> str:
    total = sum(profile.values())
    lines = ["| package | self import s | share |", "|---|---:|---:|"]
    for name, value in list(profile.items())[:top]:
        lines.append(f"| {name} | {value:.2f} | {value / total:.0%} |")
    lines.append(f"| (all {len(profile)} top-level names) | {total:.2f} | 100% |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw times and the profile here")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        env = child_env(Path(folder) / "pycache")
        named = commands(small_checkpoint(Path(folder) / "checkpoint"))
        times = measure(named, args.repeats, env)
        profile = import_profile(named[RECOMMEND], env)
    print(f"{args.repeats} interleaved runs per command, fresh processes, OMP_NUM_THREADS=1, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(times))
    print("\n`gamer-hf recommend` under -X importtime (self time per top-level package; the profiler inflates it):\n")
    print(profile_table(profile))
    if args.json is not None:
        args.json.write_text(json.dumps({"times": times, "import_profile": profile}, indent=1) + "\n")


if __name__ == "__main__":
    main()
