"""Where a loaded tokenizer's memory goes: anonymous and file-backed RSS (/proc/self/smaps_rollup) after each
step of loading a tokenizer folder and building the collator's table, and the bytes of every array the
tokenizer, its item index and the collator hold (mapped from the file or in process memory).

Each run is one fresh process; `--source SRC` runs the same probe with the package tree in SRC first on
the import path (for example `git archive main`, with `gamer_hf/modeling` linked to its `modeling/`), so
that before and after come from one script:

    python recipes/bench/tokenizer_memory.py TOKENIZER_DIR --source SRC --out results.json

Loading takes seconds: this is a probe, not a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def rollup_mib() -> dict[str, float]:
    """Anonymous and file-backed resident memory of this process, from /proc/self/smaps_rollup."""
    with open("/proc/self/smaps_rollup") as handle:
        fields = {line.split(":")[0]: int(line.split()[1]) for line in handle if line.split(":")[0] in ("Rss", "Anonymous")}
    return {"anon": fields["Anonymous"] / 1024, "file": (fields["Rss"] - fields["Anonymous"]) / 1024}


class AnonPeak(threading.Thread):
    """The largest anonymous RSS since the last `take()`, sampled every 5 ms (transients between two steps)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rollup_mib()["anon"]

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, rollup_mib()["anon"])
            time.sleep(0.005)

    def take(self) -> float:
        peak, self.peak = self.peak, rollup_mib()["anon"]
        return peak


def _arrays(owner: str, obj: Any, seen: dict[int, str]) -> list[dict[str, Any]]:
    """Every numpy array / torch tensor attribute of `obj`: its bytes, whether it is a memory map of a file, and
    which earlier table it shares its memory with (`seen`: data address -> table)."""
    import numpy as np
    import torch

    out = []
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            value = value.numpy()
        if isinstance(value, np.ndarray):
            base, mapped = value, False
            while base is not None:
                mapped = mapped or isinstance(base, np.memmap) or type(base).__name__ == "mmap"
                base = getattr(base, "base", None)
            address = value.__array_interface__["data"][0]
            out.append({"table": f"{owner}.{name}", "dtype": str(value.dtype), "shape": list(value.shape),
                        "mib": value.nbytes / 2**20, "mapped": mapped, "shares": seen.get(address)})
            seen.setdefault(address, f"{owner}.{name}")
        elif isinstance(value, bytes):
            out.append({"table": f"{owner}.{name}", "dtype": "bytes", "shape": [len(value)],
                        "mib": len(value) / 2**20, "mapped": False, "shares": None})
    return out


def probe(tokenizer_dir: str) -> dict[str, Any]:
    """The steps' RSS and the tables of one load in this process."""
    peak = AnonPeak()
    peak.start()
    steps = []

    def step(name: str) -> None:
        steps.append({"step": name, "anon_peak_mib": peak.take(), **rollup_mib()})

    import numpy as np

    from gamer_hf import checkpoint
    from gamer_hf.data import GamerCollator
    step("imports")
    tokenizer = checkpoint.load_tokenizer(tokenizer_dir)
    step("load_tokenizer")
    collator = GamerCollator(tokenizer)
    collator._token_table()
    step("collator table")
    rows = np.random.default_rng(0).integers(0, len(tokenizer.item_index), 64 * 50)
    ids = [tokenizer.item_ids[int(r)] for r in rows]
    behavior = next(iter(tokenizer.behaviors))
    collator([{"behaviors": [behavior] * 50, "items": ids[i * 50:(i + 1) * 50]} for i in range(64)])
    step("one batch of 64 x 50")
    seen: dict[int, str] = {}
    index = tokenizer.item_index
    tables = [table for owner, obj in (("item_index", index), ("item_ids", index.item_ids), ("tokenizer", tokenizer),
                                       ("collator_table", collator._token_table())) for table in _arrays(owner, obj, seen)]
    return {"items": len(tokenizer.item_index), "package": str(Path(checkpoint.__file__).parent), "steps": steps,
            "tables": tables}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tokenizer", help="a tokenizer folder (or checkpoint)")
    parser.add_argument("--source", help="also probe with the package tree in this folder, first")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(probe(args.tokenizer)))
        return
    runs = {}
    for label, source in (("before", args.source), ("after", None)) if args.source else (("after", None),):
        env = dict(os.environ, PYTHONPATH=str(Path(source).resolve())) if source else None
        done = subprocess.run([sys.executable, __file__, args.tokenizer, "--child"], capture_output=True, text=True,
                              env=env, check=True)
        runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
    for label, run in runs.items():
        print(f"{label} ({run['items']:,} items, {run['package']}):")
        base = run["steps"][0]
        for step in run["steps"]:
            print(f"  {step['step']:24s} anon {step['anon'] - base['anon']:+8.1f} MiB (peak {step['anon_peak_mib'] - base['anon']:+8.1f})"
                  f"  file {step['file'] - base['file']:+8.1f} MiB")
        for table in run["tables"]:
            where = f"the memory of {table['shares']}" if table["shares"] else "mapped" if table["mapped"] else "in memory"
            print(f"  {table['table']:30s} {table['dtype']:>6s} {str(table['shape']):>16s} {table['mib']:8.1f} MiB  {where}")
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
