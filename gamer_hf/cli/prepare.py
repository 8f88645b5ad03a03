"""`gamer-hf prepare`: events -> validated log -> sessions -> splits -> training sequences on disk.

Example:
    gamer-hf prepare --events events.csv.gz --behaviors click:0,cart:1,buy:2 --protocol session \\
        --out prepared/ --max_history 50 --augment_copies 2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from gamer_hf.data import FORMATS, prepare
from gamer_hf.data.checks import TIME_UNITS
from gamer_hf.data.prepare import MEMORY_LIMIT

__all__ = ["PrepareArguments", "run"]


@dataclass
class PrepareArguments:
    events: str = field(metadata={"help": "events file or folder (CSV/TSV[.gz], Parquet, JSON Lines, dataset folder)"})
    out: str = field(metadata={"help": "output folder for the prepared DatasetDict and metadata.json"})
    format: str = field(default="auto", metadata={"help": f"input layout: auto or one of {sorted(FORMATS)}"})
    behaviors: Optional[str] = field(
        default=None, metadata={"help": "behavior levels, e.g. click:0,cart:1,buy:2 or click<fav=cart<buy "
                                        "(default: the format's preset or the folder's meta.json)"})
    protocol: Literal["session", "loo"] = field(
        default="session", metadata={"help": "session: last session test, previous validation; loo: leave-one-out "
                                             "on the target behavior"})
    max_history: int = field(default=50, metadata={"help": "interactions per prompt; training sequences keep one more"})
    augment_copies: int = field(default=0, metadata={"help": "multi-behavior augmentation copies x (0 = off)"})
    session_by: Literal["auto", "given", "gap", "day", "none"] = field(
        default="auto", metadata={"help": "how to form sessions (auto: given ids, else day for day-resolution "
                                          "logs, else time gap)"})
    session_gap_minutes: float = field(default=60.0, metadata={"help": "inactivity gap that starts a new session"})
    target_behavior: Optional[str] = field(default=None, metadata={"help": "loo target (default: top level)"})
    k_core: int = field(default=0, metadata={"help": "keep users and items with at least k events (0 = off)"})
    min_user_events: int = field(default=2, metadata={"help": "drop users with fewer events (reported)"})
    on_invalid: Literal["raise", "drop"] = field(
        default="raise", metadata={"help": "invalid rows: stop with an error naming them, or drop and report"})
    on_duplicate: Optional[str] = field(
        default=None, metadata={"help": "identical rows: raise, drop or keep (default: like --on_invalid)"})
    timestamp_unit: Optional[str] = field(
        default=None, metadata={"help": "numeric timestamps of --format events / recbole: auto (default: detected "
                                        "from their magnitudes; times before 1990 or after now + 1 day refused), "
                                        "a unix-epoch unit s, ms, us, ns, min, h, day, or relative[_UNIT] for "
                                        f"offsets from any origin (not checked); one of {list(TIME_UNITS)}"})
    seed: int = field(default=42, metadata={"help": "augmentation seed"})
    engine: Literal["auto", "memory", "duckdb"] = field(
        default="auto", metadata={"help": "memory: the log in memory; duckdb: out of core, same splits, bounded memory "
                                          "(auto: duckdb for files of 64 MiB or more and folders of Parquet shards)"})
    memory_limit: str = field(default=MEMORY_LIMIT, metadata={"help": "DuckDB's memory cap with --engine duckdb; it "
                                                                     "spills to the output's staging folder past it"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def run(args: PrepareArguments) -> int:
    options = {"timestamp_unit": args.timestamp_unit} if args.timestamp_unit else None
    prepared = prepare(
        args.events,
        format=args.format,
        behaviors=args.behaviors,
        protocol=args.protocol,
        out=args.out,
        max_history=args.max_history,
        augment_copies=args.augment_copies,
        session_by=args.session_by,
        session_gap_minutes=args.session_gap_minutes,
        target_behavior=args.target_behavior,
        k_core=args.k_core,
        min_user_events=args.min_user_events,
        on_invalid=args.on_invalid,
        on_duplicate=args.on_duplicate,
        seed=args.seed,
        progress=args.progress,
        format_options=options,
        engine=args.engine,
        memory_limit=args.memory_limit,
    )
    print(prepared.summary())
    print(f"saved to {args.out}")
    return 0
