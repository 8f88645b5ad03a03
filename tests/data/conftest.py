"""Fixtures for the data-pipeline tests: small hand-made logs whose splits can be worked out by hand."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from gamer_hf.data import EventLog, read_events

LEVELS = {"click": 0, "cart": 1, "buy": 2}
HOUR = 3600


@pytest.fixture
def levels() -> dict[str, int]:
    return dict(LEVELS)


@pytest.fixture
def make_log() -> Callable[..., EventLog]:
    """Build a validated log from (user, item, behavior, timestamp) tuples."""

    def build(rows: list[tuple], behaviors: dict[str, int] | None = None, **options) -> EventLog:
        columns = ["user_id", "item_id", "behavior", "timestamp", "session_id"][: len(rows[0])]
        return read_events(pd.DataFrame(rows, columns=columns), "events", behaviors or LEVELS, **options)

    return build


@pytest.fixture
def session_rows() -> list[tuple]:
    """Two users; u1 has four sessions (hours apart), u2 two sessions, u3 a single session."""
    return [
        # u1 session 0
        ("u1", "a", "click", 0), ("u1", "b", "click", 60), ("u1", "b", "cart", 90),
        # u1 session 1
        ("u1", "c", "click", 3 * HOUR), ("u1", "c", "buy", 3 * HOUR + 30),
        # u1 session 2 (validation)
        ("u1", "d", "click", 6 * HOUR), ("u1", "e", "click", 6 * HOUR + 10), ("u1", "d", "cart", 6 * HOUR + 20),
        # u1 session 3 (test)
        ("u1", "f", "click", 9 * HOUR), ("u1", "g", "click", 9 * HOUR + 5), ("u1", "f", "click", 9 * HOUR + 9),
        ("u1", "f", "buy", 9 * HOUR + 30),
        # u2: validation session has no prompt (skipped), test session has one
        ("u2", "a", "click", 0), ("u2", "h", "buy", 5 * HOUR),
        # u3: one session only: its test case has no prompt
        ("u3", "a", "click", 0), ("u3", "b", "click", 10),
    ]  # fmt: skip
