"""Fault soak: `gamer-hf prepare` and `gamer-hf train` processes killed with SIGKILL, then rerun.

Each cycle
- prepares the same log again with another augmentation seed and kills the process at a random
  moment or while it writes its temporary output folder; the previous prepared folder must still load with the same content (or, when the kill
  came after the swap, the new content), and a rerun must finish and leave no temporary folder;
- trains with `--resume_from_checkpoint auto` and kills the process up to `--kills` times, at a
  random moment or just as a checkpoint folder appears (a kill while saving), rerunning the same
  command each time; after every kill the newest complete checkpoint must be no older than before,
  and the finished run must end at the step and with the weights of an uninterrupted run.
Then every case of the bad-input corpus (tests/data/bad_inputs) is prepared once and must end in
a one-line `GamerError`. Counts and timings go to recipes/bench/results/soak.json.

    nice -n 10 python recipes/bench/soak.py --cycles 3 --kills 3 --max-minutes 15
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from gamer_hf.data import generate_synthetic, load_prepared, prepare, write_synthetic
from gamer_hf.errors import GamerError
from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
from gamer_hf.training import CHECKPOINTS_SUBDIR, CheckpointError, list_checkpoints, validate_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "bad_inputs"
RESULTS = Path(__file__).with_name("results") / "soak.json"
CLI = [sys.executable, "-m", "gamer_hf.cli"]
TRAIN_FLAGS = ["--preset", "tiny", "--max_steps", "24", "--eval_steps", "4", "--per_device_train_batch_size", "16",
               "--per_device_eval_batch_size", "64", "--learning_rate", "3e-3", "--logging_steps", "4", "--seed", "0",
               "--early_stopping_patience", "0", "--use_cpu", "--disable_tqdm", "true"]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=_env())


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # a file, not a pipe: a chatty child never blocks on a full pipe
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=_env())


def _kill_after(process: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL `process` after `seconds` unless it ends first; True when it was killed."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _kill_while_saving(process: subprocess.Popen, checkpoints: Path, limit_s: float) -> bool:
    """SIGKILL `process` as soon as a checkpoint folder without trainer_state.json (being saved) shows."""
    seen = {path.name for path in list_checkpoints(checkpoints)}
    deadline = time.monotonic() + limit_s
    while process.poll() is None and time.monotonic() < deadline:
        fresh = [path for path in list_checkpoints(checkpoints)
                 if path.name not in seen and not (path / "trainer_state.json").exists()]
        if fresh:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    return _kill_after(process, max(0.0, deadline - time.monotonic()))


def _kill_while_writing(process: subprocess.Popen, out: Path, limit_s: float, rng: random.Random) -> bool:
    """SIGKILL `process` a random moment (under 0.5 s) after its temporary output folder shows."""
    deadline = time.monotonic() + limit_s
    while process.poll() is None and time.monotonic() < deadline:
        if any(".prepare-tmp-" in name for name in _temps(out)):
            return _kill_after(process, rng.uniform(0.0, 0.5))
        time.sleep(0.002)
    return _kill_after(process, max(0.0, deadline - time.monotonic()))


def digest(folder: Path) -> str | None:
    """Content of a prepared folder (splits, ids, metadata), or None when it does not load."""
    try:
        data = load_prepared(folder)
    except (GamerError, OSError, ValueError):
        return None
    content = {"metadata": data.metadata, "items": list(data.item_ids), "users": list(data.user_ids),
               "splits": {name: split.to_dict() for name, split in data.splits.items()}}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _temps(out: Path) -> list[str]:
    return sorted(path.name for path in out.parent.iterdir() if path.name.startswith(f".{out.name}.prepare-"))


def _newest_complete(checkpoints: Path) -> tuple[int, int]:
    """(step of the newest complete checkpoint or -1, number of partial checkpoint folders)."""
    newest, partial = -1, 0
    for folder in list_checkpoints(checkpoints):
        try:
            newest = max(newest, validate_checkpoint(folder))
        except CheckpointError:
            partial += 1
    return newest, partial


class Soak:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work, self.args, self.rng = work, args, random.Random(args.seed)
        self.deadline = time.monotonic() + 60 * args.max_minutes
        self.counts: dict[str, Any] = {"cycles": 0, "prepare_kills": 0, "prepare_kills_while_writing": 0,
                                       "prepare_kills_mid_swap": 0,
                                       "prepare_runs_finished_before_kill": 0,
                                       "train_kills": 0, "train_kills_while_saving": 0,
                                       "partial_checkpoints_seen": 0, "resumed_runs_matching": 0,
                                       "outputs_lost": 0, "hand_work_needed": 0, "failures": [],
                                       "failed_cycles": []}
        self.max_weight_diff = 0.0

    def _fail(self, what: str) -> None:
        self.counts["failures"].append(what)
        print("FAIL", what, flush=True)

    def setup(self) -> None:
        events, items = generate_synthetic(num_users=200, num_items=150, seed=0)
        self.events = write_synthetic(self.work / "raw", events, items)
        self.prepared = self.work / "prepared"
        started = time.monotonic()
        result = _run(self._prepare_argv(seed=0))
        self.prepare_s = time.monotonic() - started
        if result.returncode:
            raise SystemExit(f"reference prepare failed: {result.stderr}")
        self.train_data = self.work / "train_data"
        prepare(self.events, out=self.train_data, max_history=8, progress=False)
        semantic_ids = build_semantic_ids(load_prepared(self.train_data).item_ids, method="cid", codebook_size=8,
                                          seed=0)
        self.tokenizer = self.work / "tokenizer"
        save_semantic_ids(semantic_ids, self.tokenizer, behaviors=load_prepared(self.train_data).metadata["behaviors"])
        started = time.monotonic()
        reference = _run(self._train_argv(self.work / "reference"))
        self.train_s = time.monotonic() - started
        if reference.returncode:
            raise SystemExit(f"reference training failed: {reference.stderr[-2000:]}")
        self.reference = load_file(self.work / "reference" / "model.safetensors")
        self.reference_step = self._final_step(self.work / "reference")
        print(f"reference: prepare {self.prepare_s:.1f} s, train {self.train_s:.1f} s to step {self.reference_step}",
              flush=True)

    def _prepare_argv(self, seed: int) -> list[str]:
        return [*CLI, "prepare", "--events", str(self.events), "--out", str(self.prepared), "--max_history", "8",
                "--augment_copies", "1", "--seed", str(seed), "--no_progress"]

    def _train_argv(self, out: Path) -> list[str]:
        return [*CLI, "train", "--data", str(self.train_data), "--tokenizer", str(self.tokenizer),
                "--output_dir", str(out), "--resume_from_checkpoint", "auto", *TRAIN_FLAGS]

    @staticmethod
    def _final_step(out: Path) -> int:
        return json.loads((out / "gamer_training.json").read_text())["results"]["global_step"]

    def prepare_cycle(self, cycle: int) -> None:
        good = digest(self.prepared)
        argv = self._prepare_argv(seed=cycle + 1)
        process = _start(argv, self.work / "prepare.log")
        if cycle % 2 == 0:  # alternate, so that every soak has both kinds of kill
            killed = _kill_while_writing(process, self.prepared, 2 * self.prepare_s, self.rng)
            self.counts["prepare_kills_while_writing"] += killed
        else:
            killed = _kill_after(process, self.rng.uniform(0.2, 1.0) * self.prepare_s)
        self.counts["prepare_kills" if killed else "prepare_runs_finished_before_kill"] += 1
        after_kill = digest(self.prepared)
        # killed between the two renames of the swap: the old folder waits in a temp for the next run
        in_swap = after_kill is None and any(".prepare-old-" in name for name in _temps(self.prepared))
        self.counts["prepare_kills_mid_swap"] += in_swap
        rerun = _run(argv)
        if rerun.returncode:
            self._fail(f"cycle {cycle}: prepare after a kill failed: {rerun.stderr.strip()[-300:]}")
            self.counts["hand_work_needed"] += 1
            return
        new = digest(self.prepared)
        if after_kill not in (good, new) and not in_swap:
            self._fail(f"cycle {cycle}: after the kill the prepared folder held neither the last good nor the new "
                       "content")
            self.counts["outputs_lost"] += 1
        if _temps(self.prepared):
            self._fail(f"cycle {cycle}: temporary folders left after the rerun: {_temps(self.prepared)}")

    def train_cycle(self, cycle: int) -> None:
        out = self.work / f"train_{cycle}"
        checkpoints = out / CHECKPOINTS_SUBDIR
        newest, kills, runs = -1, 0, []
        while True:
            log = self.work / "train.log"
            runs.append({"start": [path.name + ("" if (path / "trainer_state.json").exists() else " (partial)")
                                   for path in list_checkpoints(checkpoints)]})
            process = _start(self._train_argv(out), log)
            if kills < self.args.kills:
                if (cycle + len(runs)) % 2 == 0:
                    killed = _kill_while_saving(process, checkpoints, limit_s=2 * self.train_s)
                    self.counts["train_kills_while_saving"] += killed
                    runs[-1]["kill"] = "while saving"
                else:
                    runs[-1]["kill"] = f"at {self.rng.uniform(0.3, 1.0) * self.train_s:.1f} s"
                    killed = _kill_after(process, float(runs[-1]["kill"].split()[1]))
            else:
                killed = _kill_after(process, 10 * self.train_s + 60)
            runs[-1]["killed"] = killed
            if not killed and process.returncode == 0:
                break
            if not killed:
                self._fail(f"cycle {cycle}: train after {kills} kills exited {process.returncode}: "
                           f"{log.read_text().strip().splitlines()[-1:]}")
                self.counts["hand_work_needed"] += 1
                return
            kills += 1
            self.counts["train_kills"] += 1
            now_newest, partial = _newest_complete(checkpoints)
            self.counts["partial_checkpoints_seen"] += partial
            if now_newest < newest:
                self._fail(f"cycle {cycle}: newest complete checkpoint went from step {newest} to {now_newest}")
                self.counts["outputs_lost"] += 1
            newest = max(newest, now_newest)
        weights = load_file(out / "model.safetensors")
        step = self._final_step(out)
        diff = max((weights[key] - tensor).abs().max().item() for key, tensor in self.reference.items())
        self.max_weight_diff = max(self.max_weight_diff, diff)
        if step == self.reference_step and set(weights) == set(self.reference) and diff <= 1e-6:
            self.counts["resumed_runs_matching"] += 1
        else:
            self._fail(f"cycle {cycle}: after {kills} kills the run ended at step {step} (reference "
                       f"{self.reference_step}), max weight difference {diff:.3g}")
            history = json.loads((out / "gamer_training.json").read_text())["log_history"]
            runs[-1]["logged_steps"] = [entry["step"] for entry in history if "loss" in entry]
            self.counts["failed_cycles"].append({"cycle": cycle, "runs": runs,
                                                 "end": [path.name for path in list_checkpoints(checkpoints)]})

    def corpus(self) -> dict[str, int]:
        corpus = Path(shutil.copytree(CORPUS, self.work / "bad_inputs"))  # no case can touch the committed files
        tried = {"errors_one_line": 0, "valid_prepared": 0, "wrong": 0}
        for case in json.loads((corpus / "manifest.json").read_text()):
            options = dict(case["prepare"])
            events = corpus / options.pop("events", case["file"])
            out = corpus / case["file"] if "events" in case["prepare"] else self.work / "corpus_out"
            if "time_unit" in options:
                options["format_options"] = {"time_unit": options.pop("time_unit")}
            try:
                prepare(events, out=out, progress=False, **options)
                tried["valid_prepared" if case["expect"] == "ok" else "wrong"] += 1
            except GamerError as error:
                one_line = "\n" not in str(error) and all(name in str(error) for name in case["names"])
                tried["errors_one_line" if one_line and case["expect"] == "error" else "wrong"] += 1
        return tried

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.setup()
        for cycle in range(self.args.cycles):
            if time.monotonic() > self.deadline:
                break
            self.prepare_cycle(cycle)
            self.train_cycle(cycle)
            self.counts["cycles"] += 1
            print(f"cycle {cycle}: {self.counts}", flush=True)
        corpus = self.corpus()
        return {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "reference_prepare_s": round(self.prepare_s, 1), "reference_train_s": round(self.train_s, 1),
                "reference_step": self.reference_step, **self.counts, "max_weight_diff": self.max_weight_diff,
                "bad_inputs": corpus, "wall_s": round(time.monotonic() - started, 1)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3, help="prepare + train cycles (bounded by --max-minutes)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per training cycle before it may finish")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="no new cycle starts after this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    parser.add_argument("--no-write", action="store_true", help="print the results, do not write soak.json")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="gamer-soak-") as work:
        results = Soak(Path(work), args).run()
    print(json.dumps(results, indent=1))
    if not args.no_write:
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if results["failures"] or results["bad_inputs"]["wrong"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
