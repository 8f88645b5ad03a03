"""HistoryMixer: fixed repeat slots and the alpha mixture of model and recency distributions."""

from __future__ import annotations

import math

import pytest

from gamer_hf.evaluation import EvalCase, HistoryMixer


@pytest.fixture
def case() -> EvalCase:
    # recent distinct history: h1, h2 (h1 most recent); h3 only under cart
    return EvalCase("u", ("cart", "click", "click", "click"), ("h3", "h2", "h1", "h1"), "buy", ("x",))


@pytest.fixture
def generated() -> list[tuple[str, float]]:
    return [("x", math.log(0.6)), ("y", math.log(0.3)), ("h1", math.log(0.1))]


@pytest.mark.parametrize(
    ("slots", "top_k", "expected"),
    [
        (0, 3, ["x", "y", "h1"]),
        (1, 3, ["h1", "x", "y"]),  # h1 moves up, not listed twice
        (2, 4, ["h1", "h2", "x", "y"]),
        (5, 4, ["h1", "h2", "h3", "x"]),  # only three distinct history items
        (2, 1, ["h1"]),
    ],
)
def test_repeat_slots(case, generated, slots: int, top_k: int, expected: list[str]) -> None:
    assert HistoryMixer(repeat_slots=slots).mix(generated, case, top_k) == expected


def test_repeat_slots_respect_behavior_filter(case, generated) -> None:
    assert HistoryMixer(repeat_slots=1, behaviors={"cart"}).mix(generated, case, 3) == ["h3", "x", "y"]


def test_alpha_mixture_by_hand(case, generated) -> None:
    # P_model = (.6, .3, .1); P_repeat over (h1, h2, h3) ∝ (1, 1/2, 1/3) = (6, 3, 2) / 11
    a = 0.5
    scores = {
        "x": (1 - a) * 0.6,
        "y": (1 - a) * 0.3,
        "h1": (1 - a) * 0.1 + a * 6 / 11,
        "h2": a * 3 / 11,
        "h3": a * 2 / 11,
    }
    expected = sorted(scores, key=lambda item: -scores[item])
    assert HistoryMixer(alpha=a).mix(generated, case, 5) == expected == ["h1", "x", "y", "h2", "h3"]


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        (0.0, ["x", "y", "h1", "h2", "h3"]),  # generated order, history-only items after it
        (1.0, ["h1", "h2", "h3", "x", "y"]),  # repeat list first, then generated order
    ],
)
def test_alpha_extremes(case, generated, alpha: float, expected: list[str]) -> None:
    assert HistoryMixer(alpha=alpha).mix(generated, case, 5) == expected


def test_alpha_with_empty_inputs(case) -> None:
    empty = EvalCase("u", (), (), "buy", ("x",))
    assert HistoryMixer(alpha=0.3).mix([("x", -1.0)], empty, 3) == ["x"]
    assert HistoryMixer(alpha=0.3).mix([], case, 2) == ["h1", "h2"]


@pytest.mark.parametrize(
    "kwargs", [{}, {"repeat_slots": 1, "alpha": 0.5}, {"repeat_slots": -1}, {"alpha": 1.5}, {"alpha": -0.1}]
)
def test_invalid_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        HistoryMixer(**kwargs)
