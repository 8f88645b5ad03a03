"""The data report on small logs shaped like each case a user met: a target behavior that occurs only in
the test sessions, a session protocol that leaves most users out, and targets that repeat the prompt's
last item; the figures are checked against a count done by hand over the cases."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gamer_hf.cli import main
from gamer_hf.data import diagnostics
from gamer_hf.data.diagnostics import DataReport, diagnose
from gamer_hf.data.prepare import load_prepared, prepare

LEVELS = {"click": 0, "cart": 1, "buy": 2}
HOUR = 3600


def _log(sessions_per_user: list[int], *, buy_in_last_session_only: bool = False, cart_then_buy: bool = False,
         ) -> pd.DataFrame:
    """One user per entry, that many sessions two hours apart, each session two clicks (and a cart and a buy
    of the second clicked item, in the last session only when `buy_in_last_session_only`)."""
    rows = []
    for user, sessions in enumerate(sessions_per_user):
        for session in range(sessions):
            t = session * 2 * HOUR
            a, b = f"i{(user + session) % 7}", f"i{(user * 3 + session) % 7 + 7}"
            rows += [(f"u{user}", a, "click", t), (f"u{user}", b, "click", t + 60)]
            last = session == sessions - 1
            if cart_then_buy or not buy_in_last_session_only or last:
                rows.append((f"u{user}", b, "cart", t + 120))
                rows.append((f"u{user}", b if cart_then_buy else a, "buy", t + 180))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "behavior", "timestamp"])


def _kinds(report: DataReport) -> list[str]:
    return [warning.kind for warning in report.warnings]


def test_target_only_in_test_sessions_is_named() -> None:
    prepared = prepare(_log([4] * 6, buy_in_last_session_only=True), behaviors=LEVELS, progress=False)
    report = diagnose(prepared.splits, prepared.metadata)
    assert report.target_training_events == 0 and report.target_cases == {"validation": 0, "test": 6}
    assert _kinds(report) == ["target_absent"]
    message = report.warnings[0].message
    assert "'buy' never occurs in the training sequences and has 0 validation cases" in message
    assert "\n" not in message and "0 test cases" not in message
    assert f"warning: {message}" in prepared.summary()


@pytest.mark.parametrize(("protocol", "left_out", "suggests_loo"), [("session", 6, True), ("loo", 0, False)])
def test_users_the_session_protocol_leaves_out(protocol: str, left_out: int, suggests_loo: bool) -> None:
    # 6 of 8 users have 2 sessions: no training history under the session protocol
    prepared = prepare(_log([2] * 6 + [5, 5]), behaviors=LEVELS, protocol=protocol, progress=False)
    report = diagnose(prepared.splits, prepared.metadata)
    assert (report.users, report.users - report.training_users) == (8, left_out)
    summary = prepared.summary()
    if left_out:
        assert "train users   2 of 8 have training history (6 left out: the last session is test and the one " \
               "before validation, so a user needs 3 or more sessions)" in summary
    assert ("users_left_out" in _kinds(report)) == suggests_loo
    assert ("--protocol loo" in summary) == suggests_loo


def _by_hand(cases: list[dict]) -> dict[str, tuple[int, int, int]]:
    counts: dict[str, list[int]] = {}
    for case in cases:
        row = counts.setdefault(case["target_behavior"], [0, 0, 0])
        targets, history = set(case["target_items"]), case["history_items"]
        row[0] += 1
        row[1] += bool(history) and history[-1] in targets
        row[2] += bool(targets & set(history))
    return {name: tuple(row) for name, row in counts.items()}


@pytest.mark.parametrize("batch_rows", [None, 2], ids=["one-batch", "batches-of-2"])
@pytest.mark.parametrize("protocol", ["session", "loo"])
def test_repeat_figures_match_a_count_by_hand(protocol: str, batch_rows: int | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if batch_rows:  # test cases judged a few at a time, as a huge split is
        monkeypatch.setattr(diagnostics, "BATCH_ROWS", batch_rows)
    prepared = prepare(_log([3, 4, 5, 3, 6]), behaviors=LEVELS, protocol=protocol, progress=False)
    report = diagnose(prepared.splits, prepared.metadata)
    expected = _by_hand(list(prepared.splits["test"]))
    assert list(report.repeats) == list(expected)  # behaviors in order of first appearance
    assert {name: (s.cases, s.last_item, s.in_prompt) for name, s in report.repeats.items()} == expected
    assert DataReport.from_dict(report.to_dict()) == report


def test_targets_that_repeat_the_last_prompt_item_are_flagged(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # every buy is of the item carted just before it: under loo the prompt ends with that cart
    events = tmp_path / "events.csv"
    _log([3] * 5, cart_then_buy=True).to_csv(events, index=False)
    assert main(["prepare", "--events", str(events), "--behaviors", "click:0,cart:1,buy:2", "--protocol", "loo",
                 "--out", str(tmp_path / "data"), "--progress", "false"]) == 0
    out = capsys.readouterr().out
    report = diagnose(*(lambda data: (data.splits, data.metadata))(load_prepared(tmp_path / "data")))
    assert _kinds(report) == ["trivial_targets"] and report.repeats["buy"].last_item == report.repeats["buy"].cases == 5
    assert "test targets  in the prompt (last item / anywhere): buy 100% / 100% of 5" in out
    assert "warning: 5 of 5 test buy cases (100%) have the prompt's last item among their targets" in out
