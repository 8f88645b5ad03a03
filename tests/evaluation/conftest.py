"""Small handcrafted behavior table, training events and test cases shared by the evaluation tests."""

from __future__ import annotations

import pytest

from gamer_hf.evaluation import EvalCase, as_cases


@pytest.fixture
def behaviors() -> dict[str, int]:
    return {"click": 1, "cart": 2, "buy": 3}


@pytest.fixture
def train_events() -> list[dict[str, str]]:
    """click counts i1:3 i2:1 i4:1; cart i3:2; buy i2:2 i3:1; overall i1:3 i2:3 i3:3 i4:1."""
    rows = [
        ("u1", "i1", "click"), ("u1", "i2", "click"), ("u1", "i2", "buy"),
        ("u2", "i1", "click"), ("u2", "i3", "cart"), ("u2", "i3", "buy"),
        ("u3", "i1", "click"), ("u3", "i4", "click"), ("u3", "i3", "cart"), ("u3", "i2", "buy"),
    ]  # fmt: skip
    return [{"user_id": u, "item_id": i, "behavior": b, "timestamp": t} for t, (u, i, b) in enumerate(rows)]


@pytest.fixture
def case_rows() -> list[dict[str, object]]:
    """Seven test cases over three behaviors (click 3, cart 1, buy 3), with history repeats."""

    def row(user: str, history: list[tuple[str, str]], behavior: str, targets: list[str]) -> dict[str, object]:
        return {
            "user_id": user,
            "history_behaviors": [b for b, _ in history],
            "history_items": [i for _, i in history],
            "target_behavior": behavior,
            "target_items": targets,
        }

    return [
        row("u1", [("click", "i1"), ("click", "i2"), ("buy", "i2")], "buy", ["i2"]),
        row("u2", [("click", "i1"), ("cart", "i3")], "buy", ["i3", "i5"]),
        row("u3", [("click", "i4"), ("cart", "i3"), ("click", "i1")], "click", ["i1", "i6"]),
        row("u4", [("click", "i5")], "click", ["i7"]),
        row("u5", [("cart", "i2"), ("click", "i2"), ("click", "i6")], "cart", ["i2"]),
        row("u6", [("click", "i3")], "click", ["i3", "i1", "i2"]),
        row("u7", [("click", "i6"), ("buy", "i1")], "buy", ["i1"]),
    ]


@pytest.fixture
def cases(case_rows: list[dict[str, object]]) -> list[EvalCase]:
    return as_cases(case_rows)
