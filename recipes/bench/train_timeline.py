"""Anonymous-RSS timeline of one `train()` run: the resident heap at each setup call of the runner and each
Trainer callback, and the peak since the previous mark (sampled every 10 ms), to find which phase of a
training run holds memory that grows with the data or the catalogue.

    python recipes/bench/train_timeline.py PREPARED TOKENIZER OUT_DIR [--max-steps 40]

Run it on two folders (for example the 10M and 100M Taobao-shaped ones) and compare the phases; the tiny
preset, batch 64 and 500 validation cases match `train_stream.py`. A probe, not a timing.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from typing import Any


def anon_mib() -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) // 1024 for line in handle if line.startswith("RssAnon"))


class Timeline(threading.Thread):
    """Prints `mark(name)` lines: seconds, current anonymous MiB, and the peak since the last mark."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.start_time = anon_mib(), time.perf_counter()

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, anon_mib())
            time.sleep(0.01)

    def mark(self, name: str) -> None:
        now = anon_mib()
        print(f"{time.perf_counter() - self.start_time:7.1f} s  {name:28s} anon {now:6d} MiB  "
              f"peak since the last mark {max(self.peak, now):6d} MiB", flush=True)
        self.peak = now


SETUP_CALLS = ("load_prepared", "load_tokenizer", "check_data", "build_model", "evaluation_sample", "_publish_best")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prepared")
    parser.add_argument("tokenizer")
    parser.add_argument("out")
    parser.add_argument("--max-steps", type=int, default=40)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    timeline = Timeline()
    timeline.start()

    from transformers import TrainerCallback

    import gamer_hf.training.runner as runner
    from gamer_hf.training import TrainArguments, train

    for name in SETUP_CALLS:  # the runner's own calls, marked before and after
        def marked(*a: Any, __call=getattr(runner, name), __name=name, **k: Any) -> Any:
            timeline.mark(f"before {__name}")
            result = __call(*a, **k)
            timeline.mark(f"after {__name}")
            return result
        setattr(runner, name, marked)

    class Marks(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            timeline.mark("train begin")

        def on_step_end(self, args: Any, state: Any, *a: Any, **k: Any) -> None:
            if state.global_step in (1, 2, 5) or state.global_step % 10 == 0:
                timeline.mark(f"step {state.global_step}")

        def on_evaluate(self, *a: Any, **k: Any) -> None:
            timeline.mark("evaluate")

        def on_save(self, *a: Any, **k: Any) -> None:
            timeline.mark("save")

    timeline.mark("imports")
    train(TrainArguments(
        data=args.prepared, tokenizer=args.tokenizer, output_dir=args.out, preset="tiny", max_steps=args.max_steps,
        eval_steps=args.max_steps, per_device_train_batch_size=64, per_device_eval_batch_size=64, max_eval_samples=500,
        logging_steps=args.max_steps, measure_step_time=False, overwrite_output_dir=True, disable_tqdm=True, seed=0),
        callbacks=[Marks()])
    timeline.mark("done")


if __name__ == "__main__":
    main()
