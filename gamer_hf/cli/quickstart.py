"""`gamer-hf quickstart`: the whole job on one machine, from events to measured recommendations.

Synthetic default data (or `--events FILE`) -> prepare -> semantic IDs -> train -> evaluate against
the popularity and repeat baselines (and GAMER+rerank vs Repeat+learned, fit on validation) -> a
metrics table, top-10 lists for one user under each behavior, the checkpoint in `./gamer/` (so
`AutoModel.from_pretrained("gamer")` loads it) and a plot. Each step is the library function the
matching command calls; a failing step raises and stops the quickstart (exit 2 with its message).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..data.prepare import load_prepared, prepare
from ..data.synthetic import generate_synthetic, write_synthetic
from ..evaluation import EvaluateArguments, EvaluationReport, evaluate_checkpoint
from ..loading import load_gamer, recommend_items
from ..plotting import plot_training_summary
from ..semantic_ids import SemanticIdArguments, build_tokenizer
from ..training import TrainArguments, train

__all__ = ["QuickstartArguments", "run"]


@dataclass
class QuickstartArguments:
    events: Optional[str] = field(default=None, metadata={"help": "your event log (default: synthetic data)"})
    format: str = field(default="auto", metadata={"help": "layout of --events (see gamer-hf prepare --help)"})
    behaviors: Optional[str] = field(default=None, metadata={"help": "levels for --events, e.g. click:0,cart:1,buy:2"})
    protocol: str = field(default="session", metadata={"help": "session (last session is test) or loo"})
    output_dir: str = field(default="gamer", metadata={"help": "where the trained checkpoint goes"})
    work_dir: str = field(default="gamer_quickstart", metadata={"help": "prepared data, tokenizer and plot"})
    num_users: int = field(default=1000, metadata={"help": "synthetic users"})
    num_items: int = field(default=300, metadata={"help": "synthetic items"})
    preset: str = field(default="tiny", metadata={"help": "model size: tiny, small or base"})
    num_train_epochs: float = field(default=6, metadata={"help": "training epochs"})
    batch_size: int = field(default=64, metadata={"help": "training sequences per step"})
    learning_rate: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    max_history: int = field(default=30, metadata={"help": "interactions per sequence"})
    augment_copies: int = field(default=2, metadata={"help": "augmented views per user (0: off)"})
    semantic_ids: str = field(default="rqkmeans", metadata={"help": "rqkmeans, rqvae or cid"})
    levels: int = field(default=3, metadata={"help": "semantic-ID levels"})
    codebook_size: int = field(default=16, metadata={"help": "codes per level"})
    max_eval_cases: Optional[int] = field(default=1500, metadata={"help": "evaluate a seeded subset (None: all)"})
    seed: int = field(default=0, metadata={"help": "one seed for data, semantic IDs and training"})


def _prepare(args: QuickstartArguments, work: Path) -> Path:
    events = args.events
    if events is None:
        raw = work / "raw"
        synthetic, items = generate_synthetic(num_users=args.num_users, num_items=args.num_items, seed=args.seed)
        write_synthetic(raw, synthetic, items, parameters={"num_users": args.num_users, "num_items": args.num_items})
        events = str(raw)
    out = work / "prepared"
    prepared = prepare(
        events, format=args.format, behaviors=args.behaviors, protocol=args.protocol, out=out,
        max_history=args.max_history, augment_copies=args.augment_copies, seed=args.seed,
    )
    print(prepared.summary())
    return out


def _show_recommendations(model_dir: Path, data_dir: Path) -> None:
    model, tokenizer = load_gamer(model_dir)
    case: dict[str, Any] = load_prepared(data_dir).splits["test"][0]
    history = list(zip(case["history_behaviors"], case["history_items"]))
    print(f"\nuser {case['user_id']}: last interactions {history[-5:]}")
    for behavior in tokenizer.behaviors:
        _, recs = recommend_items(model, tokenizer, history, behavior=behavior, top_k=10, on_unknown="skip")
        print(f"  top-10 under {behavior!r}: {[item for item, _ in recs]}")


def run(args: QuickstartArguments) -> int:
    work = Path(args.work_dir)  # created by the first step that writes into it
    data_dir = _prepare(args, work)
    tokenizer_dir = work / "tokenizer"
    built = build_tokenizer(SemanticIdArguments(
        data=str(data_dir), out=str(tokenizer_dir), method=args.semantic_ids, levels=args.levels,
        codebook_size=args.codebook_size, seed=args.seed, overwrite=True,
    ))
    for warning in built.semantic_ids.report.warnings:  # e.g. 3 x 16 codes on a large --events log
        print(f"semantic IDs: warning: {warning}")
    result = train(TrainArguments(
        data=str(data_dir), tokenizer=str(tokenizer_dir), output_dir=args.output_dir, preset=args.preset,
        num_train_epochs=args.num_train_epochs, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, max_history=args.max_history, seed=args.seed, overwrite_output_dir=True,
    ))
    report: EvaluationReport = evaluate_checkpoint(EvaluateArguments(
        model=str(result.checkpoint_dir), data=str(data_dir), max_cases=args.max_eval_cases, seed=args.seed,
    ))
    print("\n" + report.to_markdown())
    _show_recommendations(Path(result.checkpoint_dir), data_dir)
    plot = plot_training_summary(result.log_history, report, work / "quickstart.png")
    shutil.copyfile(plot, Path(result.checkpoint_dir) / plot.name)
    print(f"\ncheckpoint: {result.checkpoint_dir}  (AutoModel.from_pretrained({str(args.output_dir)!r}))")
    print(f"plot: {plot}")
    return 0
