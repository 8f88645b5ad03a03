"""Evaluation protocols: which events are training history and which are held-out targets.

session ("SMB"): per user the last session is test, the second-to-last validation, earlier ones
training history. A user is a case for behavior b when the held-out session contains b; the targets
are the SET of items touched under b there (first-touch order) and the prompt is everything before
that session.

loo (leave-one-out): the user's last event of the target behavior is test, the previous one of
that behavior validation; the prompt is everything before it. Events after the test event are
used nowhere.

Training history is always strictly earlier than the user's first held-out event, so neither
split can leak into training sequences. Cases with an empty prompt are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .arrays import EventArrays

__all__ = ["Protocol", "Cases", "Split", "session_split", "loo_split"]

Protocol = Literal["session", "loo"]


@dataclass
class Cases:
    """Held-out cases: prompt = events [history_start, history_end); targets via offsets into items."""

    users: np.ndarray
    behaviors: np.ndarray
    history_start: np.ndarray
    history_end: np.ndarray
    target_offsets: np.ndarray
    target_items: np.ndarray
    skipped_empty_history: int = 0

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    train: np.ndarray  # bool mask over events: training history
    validation: Cases
    test: Cases
    stats: dict[str, int] = field(default_factory=dict)


def _per_user(arrays: EventArrays, index: np.ndarray, *, last: bool) -> np.ndarray:
    """The first (or last) of the sorted positions `index` for every user; -1 where a user has none."""
    result = np.full(arrays.num_users, -1, dtype=np.int64)
    if index.size == 0:
        return result
    users = arrays.users[index]
    change = users[1:] != users[:-1]
    pick = np.r_[change, True] if last else np.r_[True, change]
    result[users[pick]] = index[pick]
    return result


def _empty_cases() -> Cases:
    none = np.zeros(0, dtype=np.int64)
    return Cases(none, none, none, none, np.zeros(1, dtype=np.int64), none)


def _grouped_cases(arrays: EventArrays, index: np.ndarray, history_end_of_user: np.ndarray,
                   bounds: np.ndarray, max_history: int | None) -> Cases:
    """One case per (user, behavior) among the held-out events `index` (sorted by position)."""
    if index.size == 0:
        return _empty_cases()
    users, behaviors, items = arrays.users[index], arrays.behaviors[index], arrays.items[index]
    order = np.lexsort((behaviors, users))  # stable: time order kept inside each case
    users, behaviors, items = users[order], behaviors[order], items[order]
    new_case = np.r_[True, (users[1:] != users[:-1]) | (behaviors[1:] != behaviors[:-1])]
    case_of = np.cumsum(new_case) - 1
    # set semantics: keep the first touch of each item inside a case
    _, first = np.unique(case_of * np.int64(arrays.num_items) + items, return_index=True)
    first.sort()
    case_of, items = case_of[first], items[first]
    starts = np.flatnonzero(new_case)
    case_users, case_behaviors = users[starts], behaviors[starts]
    end = history_end_of_user[case_users]
    user_start = bounds[case_users]
    has_history = end > user_start
    begin = end - max_history if max_history else user_start
    begin = np.maximum(begin, user_start)
    counts = np.bincount(case_of, minlength=len(starts))
    kept = np.flatnonzero(has_history)
    keep_item = has_history[case_of]
    offsets = np.zeros(kept.size + 1, dtype=np.int64)
    np.cumsum(counts[kept], out=offsets[1:])
    return Cases(case_users[kept], case_behaviors[kept], begin[kept], end[kept], offsets, items[keep_item],
                 skipped_empty_history=int((~has_history).sum()))


def session_split(arrays: EventArrays, session_rank: np.ndarray, *, max_history: int | None) -> Split:
    """Session-wise protocol; events must be ordered by user, then session, then time."""
    bounds = arrays.user_bounds()
    last = bounds[1:] - 1
    nonempty = bounds[1:] > bounds[:-1]
    sessions_per_user = np.zeros(arrays.num_users, dtype=np.int64)
    sessions_per_user[nonempty] = session_rank[last[nonempty]] + 1
    from_end = sessions_per_user[arrays.users] - 1 - session_rank  # 0 = test session, 1 = validation
    train = from_end >= 2
    held = []
    for distance in (1, 0):
        index = np.flatnonzero(from_end == distance)
        start_of = _per_user(arrays, index, last=False)  # the prompt ends where the held-out session starts
        held.append(_grouped_cases(arrays, index, start_of, bounds[:-1], max_history))
    stats = {"sessions": int(sessions_per_user.sum()), "unused_events": 0}
    return Split(train, held[0], held[1], stats)


def loo_split(arrays: EventArrays, target: int, *, max_history: int | None) -> Split:
    """Leave-one-out on the target behavior code `target`."""
    bounds = arrays.user_bounds()
    target_index = np.flatnonzero(arrays.behaviors == target)
    last = _per_user(arrays, target_index, last=True)
    previous = _per_user(arrays, target_index[target_index != last[arrays.users[target_index]]], last=True)
    cutoff = np.where(previous >= 0, previous, np.where(last >= 0, last, bounds[1:]))
    train = np.arange(len(arrays)) < cutoff[arrays.users]
    held = []
    for held_index in (previous, last):
        index = np.sort(held_index[held_index >= 0])
        held.append(_grouped_cases(arrays, index, held_index, bounds[:-1], max_history))
    unused = int(np.sum(np.where(last >= 0, bounds[1:] - last - 1, 0)))
    return Split(train, held[0], held[1], {"unused_events": unused})
