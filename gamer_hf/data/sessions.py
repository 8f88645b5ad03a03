"""Sessions: given by the source, or cut at time gaps, or by UTC calendar day.

Works on the canonical order (users in contiguous blocks, time ascending inside a block) and
returns each event's 0-based session rank inside its user, so that the last session of a user is
simply its largest rank.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["SessionMethod", "session_ranks", "resolve_session_method", "order_by_session"]

SessionMethod = Literal["auto", "given", "gap", "day", "none"]
DAY_SECONDS = 86400.0


def resolve_session_method(method: SessionMethod, *, has_given: bool, time_resolution: str) -> str:
    """Pick the concrete method: for "auto", given ids if present, calendar days for day-resolution
    logs, else time gaps; refuse methods the data cannot support."""
    if method == "auto":
        if has_given:
            return "given"
        if time_resolution == "order":
            raise ValueError(
                "the events carry no timestamps (event order only), so sessions cannot be derived; "
                "provide a session_id column or use the leave-one-out protocol (protocol='loo')"
            )
        return "day" if time_resolution == "day" else "gap"
    if method == "given" and not has_given:
        raise ValueError("session method 'given' needs a session_id column in the events")
    if method in ("gap", "day") and time_resolution == "order":
        raise ValueError(f"session method {method!r} needs timestamps, but the events are ordered without time")
    if method not in ("given", "gap", "day", "none"):
        raise ValueError(f"unknown session method {method!r}; choose auto, given, gap, day or none")
    return method


def _ranks(users: np.ndarray, new_session: np.ndarray) -> np.ndarray:
    """Turn 'this event starts a session' flags into per-user 0-based session ranks."""
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    new_user = np.r_[True, users[1:] != users[:-1]]
    starts = new_session | new_user
    counter = np.cumsum(starts) - 1
    return counter - counter[np.flatnonzero(new_user)][np.cumsum(new_user) - 1]


def session_ranks(
    users: np.ndarray,
    timestamps: np.ndarray,
    method: str,
    *,
    gap_minutes: float = 60.0,
    given: np.ndarray | None = None,
) -> np.ndarray:
    """Session rank of every event (events sorted by user, then time).

    gap: a new session starts when the time since the user's previous event exceeds `gap_minutes`.
    day: a new session starts when the UTC calendar day changes.
    given: sessions are ranked by their first event; use `order_by_session` to make them contiguous.
    none: one session per user.
    """
    if method == "gap":
        if gap_minutes <= 0:
            raise ValueError(f"session gap must be positive, got {gap_minutes} minutes")
        return _ranks(users, np.r_[False, np.diff(timestamps) > gap_minutes * 60.0])
    if method == "day":
        days = np.floor(timestamps / DAY_SECONDS)
        return _ranks(users, np.r_[False, days[1:] != days[:-1]])
    if method == "none":
        return _ranks(users, np.zeros(len(users), dtype=bool))
    if method == "given":
        if given is None:
            raise ValueError("method 'given' needs the session codes")
        pair = users.astype(np.int64) * (int(given.max(initial=0)) + 1) + given
        _, first, codes = np.unique(pair, return_index=True, return_inverse=True)
        # rank of each (user, session) pair by its first event inside the user's block
        order_of_pairs = np.argsort(first, kind="stable")
        pair_rank = np.empty_like(order_of_pairs)
        pair_rank[order_of_pairs] = np.arange(len(order_of_pairs))
        global_rank = pair_rank[codes]
        new_user = np.r_[True, users[1:] != users[:-1]] if len(users) else np.zeros(0, dtype=bool)
        return global_rank - global_rank[np.flatnonzero(new_user)][np.cumsum(new_user) - 1]
    raise ValueError(f"unknown session method {method!r}")


def order_by_session(users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Stable permutation that makes every session contiguous (a no-op for gap/day/none)."""
    return np.lexsort((ranks, users))
