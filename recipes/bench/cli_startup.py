"""Start-up time of the command line: each command in a fresh process, several times, as a ratio
against `python -c pass` measured in the same run (the machine is shared and noisy).

"before" is the console script as it was (`gamer_hf.cli:main`, whose import runs gamer_hf/__init__.py
and so imports torch and transformers); "after" is the console script now (`gamer_hf_entry:main`).
`import torch` and `import gamer_hf` are the floors that any command loading a model pays.

    nice -n 10 python recipes/bench/cli_startup.py --repeats 7            # prints a Markdown table
    nice -n 10 python recipes/bench/cli_startup.py --repeats 7 --json out.json
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
from pathlib import Path

import torch

from gamer_hf import GamerConfig, GamerForCausalLM
from gamer_hf.checkpoint import record_checksums

sys.path.insert(0, str(Path(__file__).parent))
from recommend_speed import build  # noqa: E402  (same folder: a random catalogue and model)

HISTORY = "click:item1,cart:item2,buy:item3"


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
    recommend = ["recommend", "--model", str(checkpoint), "--history", HISTORY, "--top_k", "5"]
    return {
        "python -c pass": [python, "-c", "pass"],
        "import torch": [python, "-c", "import torch"],
        "import gamer_hf": [python, "-c", "import gamer_hf"],
        "gamer-hf --help (before)": [python, "-c", "from gamer_hf.cli import main; main(['--help'])"],
        "gamer-hf --help (after)": [python, "-c", "from gamer_hf_entry import main; main(['--help'])"],
        "gamer-hf recommend (before)": [python, "-c", f"from gamer_hf.cli import main; main({recommend!r})"],
        "gamer-hf recommend (after)": [python, "-c", f"from gamer_hf_entry import main; main({recommend!r})"],
    }


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def measure(named: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    """Interleaved rounds (every command once per round), so that load changes hit all alike."""
    for command in named.values():
        seconds(command)  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(repeats):
        for name, command in named.items():
            times[name].append(seconds(command))
    return times


def table(times: dict[str, list[float]]) -> str:
    base = statistics.median(times["python -c pass"])
    lines = ["| command | median s | min-max s | x `python -c pass` |", "|---|---:|---:|---:|"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {median / base:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw times here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        times = measure(commands(small_checkpoint(Path(folder))), args.repeats)
    print(f"{args.repeats} interleaved runs per command, fresh processes, OMP_NUM_THREADS=1, {os.cpu_count()} CPUs\n")
    print(table(times))
    if args.json is not None:
        args.json.write_text(json.dumps(times, indent=1) + "\n")


if __name__ == "__main__":
    main()
