"""From sorted, filtered events to the three split tables: the per-user steps of every engine.

Sessions, the split protocol, training sequences (with augmentation) and evaluation cases only
look inside one user's events, so they run on the whole log (in-memory `prepare`) or on blocks of
whole users streamed from disk (`outofcore`), through this one code path; the statistics of blocks
add up (`add_stats`) to those of the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigurationError
from .arrays import EventArrays
from .behaviors import BehaviorTable
from .sequences import cases_table, training_table
from .sessions import SessionMethod, order_by_session, resolve_session_method, session_ranks
from .splits import Cases, Protocol, Split, loo_split, session_split

__all__ = ["SplitPlan", "plan_splits", "build_splits", "add_stats"]


@dataclass(frozen=True)
class SplitPlan:
    """The resolved options of the per-user steps (what metadata.json records of them)."""

    protocol: Protocol
    table: BehaviorTable
    session_method: str | None
    session_gap_minutes: float | None
    target: str | None
    max_history: int | None
    augment_copies: int
    seed: int

    @property
    def sessions(self) -> dict[str, Any]:
        return {"method": self.session_method, "gap_minutes": self.session_gap_minutes}


def plan_splits(table: BehaviorTable, *, protocol: Protocol, session_by: SessionMethod, session_gap_minutes: float,
                target_behavior: str | None, has_given_sessions: bool, time_resolution: str,
                max_history: int | None, augment_copies: int, seed: int) -> SplitPlan:
    """Resolve the session method and the target behavior, refusing what the log cannot support."""
    method, gap = None, None
    if protocol == "session":
        method = resolve_session_method(session_by, has_given=has_given_sessions, time_resolution=time_resolution)
        gap = session_gap_minutes if method == "gap" else None
        target = target_behavior or (table.target if len(table.top_behaviors) == 1 else None)
    else:
        target = target_behavior or table.target
        if target not in table:
            raise ConfigurationError(f"target behavior {target!r} is not one of {table.names}")
    return SplitPlan(protocol, table, method, gap, target, max_history, augment_copies, seed)


def _case_stats(cases: Cases, table: BehaviorTable) -> dict[str, Any]:
    per_behavior = np.bincount(cases.behaviors, minlength=len(table))
    return {
        "cases": len(cases),
        "users": int(np.unique(cases.users).size),
        "cases_per_behavior": {name: int(n) for name, n in zip(table.names, per_behavior)},
        "target_items": int(cases.target_offsets[-1]),
        "skipped_empty_history": cases.skipped_empty_history,
    }


def build_splits(arrays: EventArrays, plan: SplitPlan, *,
                 augment_offset: int = 0) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """The train / validation / test tables of these events (whole users) and their statistics.

    `augment_offset` is the number of training events of the users before these (see
    augmentation.augmentation_keep_masks).
    """
    if plan.protocol == "session":
        ranks = session_ranks(arrays.users, arrays.time, plan.session_method,
                              gap_minutes=plan.session_gap_minutes or 60.0,  # unused unless 'gap'
                              given=arrays.given_sessions)
        if plan.session_method == "given":
            order = order_by_session(arrays.users, ranks)
            arrays, ranks = arrays.permuted(order), ranks[order]
        split: Split = session_split(arrays, ranks, max_history=plan.max_history)
    else:
        split = loo_split(arrays, plan.table.names.index(plan.target), max_history=plan.max_history)
    train, train_stats = training_table(arrays, split.train, max_history=plan.max_history,
                                        copies=plan.augment_copies, seed=plan.seed, augment_offset=augment_offset)
    tables = {"train": train, "validation": cases_table(arrays, split.validation),
              "test": cases_table(arrays, split.test)}
    stats = {
        "num_users": arrays.num_users,
        "num_events": len(arrays),
        "events_per_behavior": arrays.behavior_counts(),
        "num_sessions": split.stats.get("sessions"),
        "splits": {
            "train": train_stats,
            "validation": _case_stats(split.validation, plan.table),
            "test": _case_stats(split.test, plan.table),
            "unused_events": split.stats["unused_events"],
        },
    }
    return tables, stats


def add_stats(total: Any, part: Any) -> Any:
    """Counts of disjoint sets of users added up, key by key (None stays None)."""
    if total is None:
        return part
    if isinstance(total, dict):
        return {key: add_stats(total[key], part[key]) for key in total}
    return total + part
