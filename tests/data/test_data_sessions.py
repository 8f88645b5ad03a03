"""Sessionization: by time gap, calendar day or given ids; properties checked with hypothesis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamer_hf.data.sessions import order_by_session, resolve_session_method, session_ranks

MINUTE = 60.0


def test_gap_sessions_by_hand() -> None:
    users = np.array([0, 0, 0, 0, 1, 1])
    time = np.array([0, 30, 100, 130, 0, 61]) * MINUTE
    assert session_ranks(users, time, "gap", gap_minutes=60).tolist() == [0, 0, 1, 1, 0, 1]
    # the boundary is strict: a pause of exactly the gap (70 min) stays in the session
    assert session_ranks(users, time, "gap", gap_minutes=69).tolist() == [0, 0, 1, 1, 0, 0]
    assert session_ranks(users, time, "gap", gap_minutes=70).tolist() == [0, 0, 0, 0, 0, 0]


def test_day_sessions_use_utc_calendar_days() -> None:
    day = 86400.0
    users = np.array([0, 0, 0, 1])
    time = np.array([day - 1, day, day + 3600 * 20, 5.0])  # 23:59:59, then midnight: a new day
    assert session_ranks(users, time, "day").tolist() == [0, 1, 1, 0]


def test_given_sessions_are_ranked_by_first_event_and_made_contiguous() -> None:
    users = np.array([0, 0, 0, 0, 1, 1])
    given_ids = np.array([5, 2, 5, 2, 2, 9])  # codes of session ids; user 0's session 5 starts first
    ranks = session_ranks(users, np.arange(6.0), "given", given=given_ids)
    assert ranks.tolist() == [0, 1, 0, 1, 0, 1]
    order = order_by_session(users, ranks)
    assert order.tolist() == [0, 2, 1, 3, 4, 5]


@pytest.mark.parametrize(
    ("method", "has_given", "resolution", "expected"),
    [
        ("auto", True, "seconds", "given"),
        ("auto", False, "seconds", "gap"),
        ("auto", False, "day", "day"),
        ("gap", True, "seconds", "gap"),
        ("none", False, "order", "none"),
    ],
)
def test_method_resolution(method: str, has_given: bool, resolution: str, expected: str) -> None:
    assert resolve_session_method(method, has_given=has_given, time_resolution=resolution) == expected


@pytest.mark.parametrize(("method", "has_given"), [("auto", False), ("gap", False), ("day", True), ("given", False)])
def test_impossible_methods_explain_themselves(method: str, has_given: bool) -> None:
    resolution = "order" if method != "given" else "seconds"
    with pytest.raises(ValueError, match="timestamps|session_id"):
        resolve_session_method(method, has_given=has_given, time_resolution=resolution)


@st.composite
def sorted_logs(draw) -> tuple[np.ndarray, np.ndarray]:
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=5))
    users = np.repeat(np.arange(len(sizes)), sizes)
    gaps = draw(st.lists(st.floats(0, 300, allow_nan=False), min_size=len(users), max_size=len(users)))
    time = np.concatenate([np.cumsum(np.array(gaps[s - n:s]) * MINUTE)
                           for s, n in zip(np.cumsum(sizes), sizes)])  # fmt: skip
    return users, time


@settings(max_examples=80, deadline=None)
@given(sorted_logs(), st.sampled_from([15.0, 60.0, 240.0]))
def test_gap_session_properties(log: tuple[np.ndarray, np.ndarray], gap: float) -> None:
    users, time = log
    ranks = session_ranks(users, time, "gap", gap_minutes=gap)
    for user in np.unique(users):
        mine, when = ranks[users == user], time[users == user]
        assert mine[0] == 0
        steps = np.diff(mine)
        assert set(steps.tolist()) <= {0, 1}
        # a new session starts exactly where the inactivity exceeds the gap
        assert (steps == 1).tolist() == (np.diff(when) > gap * MINUTE).tolist()
        # sessionizing one user alone gives the same ranks (users are independent)
        alone = session_ranks(np.zeros(len(mine), dtype=np.int64), when, "gap", gap_minutes=gap)
        assert alone.tolist() == mine.tolist()


@settings(max_examples=60, deadline=None)
@given(sorted_logs(), st.lists(st.integers(0, 3), min_size=60, max_size=60))
def test_given_session_properties(log: tuple[np.ndarray, np.ndarray], labels: list[int]) -> None:
    users, time = log
    given_ids = np.array(labels[: len(users)])
    ranks = session_ranks(users, time, "given", given=given_ids)
    order = order_by_session(users, ranks)
    users_sorted, ranks_sorted, ids_sorted = users[order], ranks[order], given_ids[order]
    assert np.all(np.diff(users_sorted) >= 0)
    for user in np.unique(users):
        mine = ranks_sorted[users_sorted == user]
        ids = ids_sorted[users_sorted == user]
        assert mine.tolist() == sorted(mine.tolist())
        assert sorted(set(mine.tolist())) == list(range(len(set(ids.tolist()))))  # one rank per given id
        assert all(len(set(ids[mine == r].tolist())) == 1 for r in set(mine.tolist()))
