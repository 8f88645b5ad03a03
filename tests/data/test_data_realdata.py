"""Prepared real datasets agree with an independent pandas computation of the same protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gamer_hf.data import BehaviorTable, PreparedData, prepare

pytestmark = pytest.mark.realdata
MAX_HISTORY = 50
COPIES = 2


def _events(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "events.csv.gz", dtype={"user_id": str, "item_id": str, "behavior": str})
    frame["position"] = frame.groupby("user_id", sort=False).cumcount()
    return frame


def _first_rows(split) -> dict[str, list[tuple[str, str]]]:
    """The original (first) training row of every user."""
    columns = split.to_dict()
    rows: dict[str, list[tuple[str, str]]] = {}
    for user, behaviors, items in zip(columns["user_id"], columns["behaviors"], columns["items"]):
        rows.setdefault(user, list(zip(behaviors, items)))
    return rows


def _tails(frame: pd.DataFrame, cutoff: pd.Series) -> dict[str, list[tuple[str, str]]]:
    """Per user: the last MAX_HISTORY + 1 events strictly before the user's cutoff position."""
    limit = frame["user_id"].map(cutoff)
    kept = frame[(frame["position"] < limit) & (frame["position"] >= limit - MAX_HISTORY - 1)]
    users = kept["user_id"].to_numpy()
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1, len(users)]
    pairs = list(zip(kept["behavior"], kept["item_id"]))
    return {users[a]: pairs[a:b] for a, b in zip(starts[:-1], starts[1:])}


def _check_augmentation(data: PreparedData, history_length: dict[str, int]) -> None:
    """Views of users whose history fits untruncated keep every top-level event and drop the formula's counts."""
    table: BehaviorTable = data.behaviors
    views: dict[str, list[list[str]]] = {}
    columns = data.splits["train"].to_dict()
    for user, behaviors in zip(columns["user_id"], columns["behaviors"]):
        views.setdefault(user, []).append(behaviors)
    checked = 0
    for user, (original, *augmented) in views.items():
        if history_length.get(user, MAX_HISTORY + 2) > MAX_HISTORY + 1:
            continue
        counts = {b: original.count(b) for b in table.names}
        for k, view in enumerate(augmented, start=1):
            for b in table.names:
                expected = counts[b] if b in table.top_behaviors else counts[b] - counts[b] * k // (
                    COPIES * table.hierarchy_rank(b))
                assert view.count(b) == expected, (user, k, b)
            checked += 1
    assert checked > 100


def test_retailrocket_session_protocol(data_dir: Path) -> None:
    folder = data_dir / "retailrocket_cml"
    data = prepare(folder, protocol="session", max_history=MAX_HISTORY, augment_copies=COPIES, progress=False)
    frame = _events(folder)
    meta = data.metadata
    assert meta["num_events"] == len(frame) and meta["num_users"] == frame["user_id"].nunique()
    assert meta["num_items"] == frame["item_id"].nunique()
    assert meta["events_per_behavior"] == frame["behavior"].value_counts().to_dict()
    assert not data.report

    pause = frame.groupby("user_id", sort=False)["timestamp"].diff() > 3600
    frame["session"] = pause.astype(int).groupby(frame["user_id"], sort=False).cumsum()
    sessions = frame.groupby("user_id", sort=False)["session"].max() + 1
    assert meta["num_sessions"] == sessions.sum()
    frame["from_end"] = frame["user_id"].map(sessions) - 1 - frame["session"]

    for name, distance in (("test", 0), ("validation", 1)):
        held = frame[(frame["from_end"] == distance) & (frame["session"] > 0)]  # a prompt needs an earlier session
        expected = held.groupby(["user_id", "behavior"], sort=False)["item_id"].agg(lambda s: sorted(set(s)))
        got = {(r["user_id"], r["target_behavior"]): sorted(r["target_items"]) for r in data.splits[name].to_list()}
        assert got == expected.to_dict()
        assert meta["splits"][name]["cases_per_behavior"] == held.groupby("behavior")["user_id"].nunique().reindex(
            data.behaviors.names, fill_value=0).to_dict()

    # training = the tail of everything before the validation session: no held-out event leaks in
    first_validation = frame[frame["from_end"] == 1].groupby("user_id", sort=False)["position"].min()
    train = _first_rows(data.splits["train"])
    assert train == {u: t for u, t in _tails(frame, first_validation).items() if t}
    _check_augmentation(data, first_validation.to_dict())


def test_retail_beh_leave_one_out(data_dir: Path) -> None:
    folder = data_dir / "retail_beh_mbht"
    data = prepare(folder, protocol="loo", max_history=MAX_HISTORY, augment_copies=COPIES, progress=False)
    frame = _events(folder)
    meta = data.metadata
    assert meta["time_resolution"] == "order" and meta["target_behavior"] == "buy"
    assert meta["num_events"] == len(frame)
    assert meta["events_per_behavior"] == frame["behavior"].value_counts().to_dict()

    buys = frame[frame["behavior"] == "buy"]
    last = buys.groupby("user_id", sort=False)["position"].max()
    previous = buys[buys["position"] < buys["user_id"].map(last)].groupby("user_id", sort=False)["position"].max()
    test = {r["user_id"]: r for r in data.splits["test"].to_list()}
    validation = {r["user_id"]: r for r in data.splits["validation"].to_list()}
    assert set(test) == set(last[last > 0].index) and set(validation) == set(previous[previous > 0].index)
    before_test = frame[frame["position"] < frame["user_id"].map(last)]
    histories = before_test.groupby("user_id", sort=False).tail(MAX_HISTORY).groupby("user_id", sort=False)[
        "item_id"].agg(list)
    targets = frame[frame["position"] == frame["user_id"].map(last)].set_index("user_id")["item_id"]
    assert {u: r["history_items"] for u, r in test.items()} == histories.to_dict()
    assert {u: r["target_items"] for u, r in test.items()} == {u: [i] for u, i in targets.items()}

    # the published test sequences end with their target buy
    splits = pd.read_csv(folder / "splits.csv.gz", dtype={"user_id": str})
    published = splits.loc[splits["split"] == "test", "user_id"]
    last_item = frame.groupby("user_id", sort=False)["item_id"].last()
    assert all(test[u]["target_items"] == [last_item[u]] for u in published if u in test)

    cutoff = previous.reindex(last.index).fillna(last).astype(int)
    train = _first_rows(data.splits["train"])
    expected = _tails(frame, cutoff)
    assert train == {u: t for u, t in expected.items() if t}
    _check_augmentation(data, cutoff.to_dict())
