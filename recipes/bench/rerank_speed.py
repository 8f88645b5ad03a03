"""What the evaluation's reranker fits cost: `evaluate_checkpoint` by this tree's code and by a baseline commit's.

The checkpoint is the end-to-end test's (`tests/test_end_to_end.py::test_pipeline_on_retailrocket`): retailrocket_cml
prepared session-wise, CID semantic IDs, the tiny preset trained 30 steps, evaluated on 150 test cases with the
mixer chosen and the rerankers fit on 1,000 validation cases. Each round runs both codes in fresh processes (each
commit's `gamer_hf` extracted by `git archive` and put first on PYTHONPATH), alternating which goes first, since
the machine is shared: the ratios within a round are what count. Each run reports its wall time, the seconds spent
inside `HistoryReranker.fit`, and what the fits chose.

`--fits` times the fits alone, in one process, on the same checkpoint's beams of the 1,000 validation cases
(decoded once): the baseline commit's `HistoryReranker` (its reranking module written out by `git show`) against
this tree's, ungated and gated grid alike, with `residual` off (the same objective as the baseline's) and on (the
default), and reports how far apart the weights and the cross-validation choices are.

    OMP_NUM_THREADS=1 python recipes/bench/rerank_speed.py --data-dir /work/shared/data --baseline-commit main --rounds 3
    OMP_NUM_THREADS=1 python recipes/bench/rerank_speed.py --data-dir /work/shared/data --baseline-commit main --fits
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from code_at import package_at  # a sibling script

REPO = Path(__file__).resolve().parents[2]

# Run in a child, with the code under test first on the path: one evaluate_checkpoint, the fits timed.
_CHILD = """
import json, sys, time
from gamer_hf.evaluation import HistoryReranker
from gamer_hf.evaluation.protocol import EvaluateArguments, evaluate_checkpoint
spent, depth = [], [0]
fit = HistoryReranker.fit
def timed(self, *args, **kwargs):  # the outermost fits only: a residual fit fits its rule inside
    start = time.perf_counter()
    depth[0] += 1
    try:
        return fit(self, *args, **kwargs)
    finally:
        depth[0] -= 1
        if not depth[0]:
            spent.append(time.perf_counter() - start)
HistoryReranker.fit = timed
model, data, out = sys.argv[1:4]
start = time.perf_counter()
report = evaluate_checkpoint(EvaluateArguments(model=model, data=data, max_cases=150, num_beams=20, out=out), progress=False)
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "fit_s": sum(spent), "fits": len(spent),
                  "ndcg10": {r.name: r.target.get("NDCG@10") for r in report.results}}))
"""


def build_checkpoint(data_dir: Path, work: Path) -> tuple[Path, Path]:
    """The end-to-end test's prepared data and 30-step checkpoint, built once with this tree's code."""
    from gamer_hf.data import prepare
    from gamer_hf.semantic_ids import SemanticIdArguments, build_tokenizer
    from gamer_hf.training import TrainArguments, train

    prepared, gamer = work / "prepared", work / "gamer"
    if not (prepared / "metadata.json").is_file():
        prepare(data_dir / "retailrocket_cml", protocol="session", max_history=20, out=prepared, progress=False)
    if not (work / "checkpoint.txt").is_file():
        build_tokenizer(SemanticIdArguments(data=str(prepared), out=str(work / "tokenizer"), method="cid"))
        result = train(TrainArguments(data=str(prepared), tokenizer=str(work / "tokenizer"), output_dir=str(gamer),
                                      preset="tiny", max_steps=30, per_device_train_batch_size=32, learning_rate=3e-3,
                                      disable_tqdm=True, eval_steps=30, save_steps=30))
        (work / "checkpoint.txt").write_text(str(result.checkpoint_dir))
    return Path((work / "checkpoint.txt").read_text()), prepared


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, prepared = build_checkpoint(Path(args.data_dir), work)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        sources = {"baseline": Path(scratch) / "baseline", "this tree": Path(scratch) / "this_tree"}
        for code, commit in (("baseline", args.baseline_commit), ("this tree", args.commit)):
            package_at(commit, sources[code])
        for round_ in range(args.rounds):
            for code in (["baseline", "this tree"] if round_ % 2 == 0 else ["this tree", "baseline"]):
                env = dict(os.environ) | {"PYTHONPATH": str(sources[code])}
                out = Path(scratch) / f"eval_{round_}_{code.replace(' ', '_')}"
                done = subprocess.run([sys.executable, "-c", _CHILD, str(checkpoint), str(prepared), str(out)],
                                      env=env, cwd=scratch, check=True, capture_output=True, text=True)
                row = json.loads(done.stdout.strip().splitlines()[-1]) | {"code": code, "round": round_,
                                                                          "load": os.getloadavg()[0]}
                rows.append(row)
                print(f"round {round_} {code}: {row['wall_s']:.1f} s, fits {row['fit_s']:.1f} s ({row['fits']} fits), "
                      f"load {row['load']:.1f}", flush=True)
    return rows


def baseline_reranker(commit: str, folder: Path) -> type:
    """The baseline commit's HistoryReranker, imported from its reranking module beside today's package."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{commit}:gamer_hf/evaluation/reranking.py"], check=True, cwd=REPO,
                            capture_output=True, text=True).stdout
    source = source.replace("from ..", "from gamer_hf.").replace("from .", "from gamer_hf.evaluation.")
    path = folder / "baseline_reranking.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_reranking", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HistoryReranker


def time_fits(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The reranker fits alone on one set of decoded validation beams: baseline, this tree, this tree residual."""
    from gamer_hf.checkpoint import load_checkpoint
    from gamer_hf.data import load_prepared
    from gamer_hf.evaluation import (GATE_GRID, REGULARIZATION_GRID, Evaluator, GamerRecommender, HistoryReranker,
                                     MostPopular, as_cases)
    from gamer_hf.evaluation.gamer_recommender import beam_items
    from gamer_hf.evaluation.protocol import decode_beams, subset_cases

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, prepared_dir = build_checkpoint(Path(args.data_dir), work)
    model, tokenizer = load_checkpoint(checkpoint, device="cpu")
    prepared = load_prepared(prepared_dir)
    popular = MostPopular().fit(prepared.splits["train"])
    cases = as_cases(subset_cases(prepared.splits["validation"], 1000, 0))  # evaluate_checkpoint's fit cases
    held_out = Evaluator(cases, prepared.metadata["behaviors"], batch_size=64, progress=False)
    gamer = GamerRecommender(model, tokenizer, num_beams=20, max_history=prepared.metadata.get("max_history"),
                             on_unknown="skip")
    beams, explored = decode_beams(held_out, gamer)[0], decode_beams(held_out, gamer, exclude_history=True)[0]
    behaviors = held_out.behaviors
    scores = gamer.pool_scores(cases, beams, HistoryReranker(behaviors, popular, popular_pool=10), explored)
    inputs = (cases, beam_items(beams), scores, beam_items(explored))
    with tempfile.TemporaryDirectory() as scratch:
        codes = {"baseline": baseline_reranker(args.baseline_commit, Path(scratch)), "this tree": HistoryReranker}
        rows = []
        for round_ in range(args.rounds):
            for code, residual in ([("baseline", False), ("this tree", False), ("this tree", True)][::1 - 2 * (round_ % 2)]):
                for use_model in (False, True)[residual:]:  # residual: GAMER's rerankers only
                    settings = {"residual": True} if residual else {}
                    reranker = codes[code](behaviors, popular, use_model=use_model, popular_pool=10,
                                           regularization=REGULARIZATION_GRID, gate=GATE_GRID, **settings)
                    start = time.perf_counter()
                    reranker.fit(*inputs) if use_model else reranker.fit(cases)
                    rows.append({"code": code, "residual": residual, "use_model": use_model, "round": round_,
                                 "fit_s": time.perf_counter() - start, "load": os.getloadavg()[0],
                                 "weights": reranker.weights})
                    print(f"round {round_} {code}{' residual' if residual else ''} "
                          f"{'GAMER+rerank' if use_model else 'Repeat+learned'}: {rows[-1]['fit_s']:.1f} s", flush=True)
    return rows


def fits_table(rows: list[dict[str, Any]], baseline: str) -> str:
    """Fit seconds per reranker and code, their ratio to the baseline, and how close the fitted weights are."""
    lines = [f"| reranker | code | fit s, median (range) | / baseline `{baseline}`, median (range) | CV choice | "
             "max abs coef difference to the baseline |", "|---|---|---:|---:|---|---:|"]
    for use_model, label in ((False, "Repeat+learned"), (True, "GAMER+rerank")):
        mine = [r for r in rows if r["use_model"] == use_model]
        old = {r["round"]: r for r in mine if r["code"] == "baseline"}
        for code, residual in (("baseline", False), ("this tree", False), ("this tree", True))[:2 + use_model]:
            chosen = sorted((r for r in mine if (r["code"], r["residual"]) == (code, residual)), key=lambda r: r["round"])
            seconds = [r["fit_s"] for r in chosen]
            ratios = [r["fit_s"] / old[r["round"]]["fit_s"] for r in chosen]
            weights = chosen[0]["weights"]
            choice = ("rule only" if weights["regularization"] == 0 else
                      f"{'model only ' if weights.get('model_only') else ''}{'gated' if weights['gate'] else 'ungated'} "
                      f"C={weights['regularization']:g}")
            same = weights["features"] == old[0]["weights"]["features"]
            gap = (f"{np.abs(np.subtract(weights['coef'], old[0]['weights']['coef'])).max():.1e}" if same else
                   "- (another setting)")
            lines.append(f"| {label} | {code}{' (residual)' if residual else ''} | {np.median(seconds):.2f} "
                         f"({min(seconds):.2f}-{max(seconds):.2f}) | {np.median(ratios):.2f}x ({min(ratios):.2f}-"
                         f"{max(ratios):.2f}) | {choice} | {gap if code != 'baseline' else '-'} |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], baseline: str) -> str:
    def spread(values: list[float], digits: int = 2, unit: str = "") -> str:
        return f"{np.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    lines = ["| | baseline (`" + baseline + "`) | this branch | this branch / baseline, median (range over rounds) |",
             "|---|---:|---:|---:|"]
    for key, label in (("wall_s", "evaluate_checkpoint, s"), ("fit_s", "inside HistoryReranker.fit, s")):
        mine = {code: [r[key] for r in sorted(rows, key=lambda r: r["round"]) if r["code"] == code]
                for code in ("baseline", "this tree")}
        ratios = [new / old for new, old in zip(mine["this tree"], mine["baseline"])]
        lines.append(f"| {label} | {spread(mine['baseline'], 1)} | {spread(mine['this tree'], 1)} | "
                     f"{spread(ratios, 2, 'x')} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("GAMER_HF_DATA_DIR"), required=False)
    parser.add_argument("--baseline-commit", default="main")
    parser.add_argument("--commit", default="HEAD", help="the code measured against the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default=str(REPO / "runs" / "rerank_speed"), help="the checkpoint, kept for reruns")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--fits", action="store_true", help="time the reranker fits alone, in one process")
    args = parser.parse_args(argv)
    if not args.data_dir:
        parser.error("give --data-dir or set GAMER_HF_DATA_DIR")
    return args


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    rows = time_fits(args) if args.fits else run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    print(fits_table(rows, args.baseline_commit) if args.fits else table(rows, args.baseline_commit))
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
