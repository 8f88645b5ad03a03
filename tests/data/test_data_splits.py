"""Session-wise and leave-one-out splits: worked examples and leak-freedom on random logs."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamer_hf.data import prepare

HOUR = 3600


def _cases(split) -> list[tuple]:
    return [(r["user_id"], r["target_behavior"], r["target_items"],
             list(zip(r["history_behaviors"], r["history_items"]))) for r in split]


def test_session_protocol_by_hand(make_log, session_rows) -> None:
    data = prepare(make_log(session_rows), protocol="session", max_history=None, min_user_events=1, progress=False)
    train = list(zip(data.splits["train"]["user_id"], data.splits["train"]["items"]))
    assert train == [("u1", ["a", "b", "b", "c", "c"])]
    u1_train = [("click", "a"), ("click", "b"), ("cart", "b"), ("click", "c"), ("buy", "c")]
    u1_validation = [("click", "d"), ("click", "e"), ("cart", "d")]
    assert _cases(data.splits["validation"]) == [
        ("u1", "click", ["d", "e"], u1_train),
        ("u1", "cart", ["d"], u1_train),
    ]
    assert _cases(data.splits["test"]) == [
        ("u1", "click", ["f", "g"], u1_train + u1_validation),  # a set: f clicked twice, listed once
        ("u1", "buy", ["f"], u1_train + u1_validation),
        ("u2", "buy", ["h"], [("click", "a")]),
    ]
    splits = data.metadata["splits"]
    assert splits["validation"]["skipped_empty_history"] == 1  # u2's validation session has no prompt
    assert splits["test"]["skipped_empty_history"] == 1  # u3 has a single session
    assert splits["test"]["cases_per_behavior"] == {"click": 1, "cart": 0, "buy": 2}
    assert data.metadata["num_sessions"] == 4 + 2 + 1


def test_history_is_capped_at_max_history(make_log, session_rows) -> None:
    data = prepare(make_log(session_rows), protocol="session", max_history=2, min_user_events=1, progress=False)
    assert data.splits["train"]["items"] == [["b", "c", "c"]]  # max_history + 1
    assert [r["history_items"] for r in data.splits["test"]] == [["e", "d"], ["e", "d"], ["a"]]


def test_given_sessions_are_used(make_log) -> None:
    rows = [("u", "a", "click", 0, "s1"), ("u", "b", "click", 1, "s2"), ("u", "c", "buy", 2, "s3"),
            ("u", "d", "buy", 3, "s3")]  # fmt: skip
    data = prepare(make_log(rows), protocol="session", min_user_events=1, progress=False)
    assert data.metadata["sessions"]["method"] == "given"
    assert _cases(data.splits["test"]) == [("u", "buy", ["c", "d"], [("click", "a"), ("click", "b")])]


def test_loo_protocol_by_hand(make_log) -> None:
    rows = [("u1", "a", "click", 1), ("u1", "a", "buy", 2), ("u1", "b", "click", 3), ("u1", "c", "buy", 4),
            ("u1", "d", "click", 5), ("u1", "e", "buy", 6), ("u1", "z", "click", 7),
            ("u2", "x", "click", 1), ("u2", "y", "buy", 2),
            ("u3", "q", "click", 1), ("u3", "r", "cart", 2)]  # fmt: skip
    data = prepare(make_log(rows), protocol="loo", max_history=None, min_user_events=1, progress=False)
    u1 = [("click", "a"), ("buy", "a"), ("click", "b"), ("buy", "c"), ("click", "d")]
    assert _cases(data.splits["test"]) == [("u1", "buy", ["e"], u1), ("u2", "buy", ["y"], [("click", "x")])]
    assert _cases(data.splits["validation"]) == [("u1", "buy", ["c"], u1[:3])]
    train = dict(zip(data.splits["train"]["user_id"], data.splits["train"]["items"]))
    # u1 trains on what precedes its validation buy, u2 on what precedes its test buy, u3 has no buy at all
    assert train == {"u1": ["a", "a", "b"], "u2": ["x"], "u3": ["q", "r"]}
    assert data.metadata["splits"]["unused_events"] == 1  # u1's click after its last buy


def test_loo_target_can_be_chosen(make_log) -> None:
    rows = [("u", "a", "click", 1), ("u", "b", "cart", 2), ("u", "c", "buy", 3), ("u", "d", "cart", 4)]
    data = prepare(make_log(rows), protocol="loo", target_behavior="cart", min_user_events=1, progress=False)
    assert _cases(data.splits["test"]) == [("u", "cart", ["d"], [("click", "a"), ("cart", "b"), ("buy", "c")])]
    with pytest.raises(ValueError, match="target behavior 'like'"):
        prepare(make_log(rows), protocol="loo", target_behavior="like", min_user_events=1, progress=False)


def test_order_only_logs_need_loo_or_sessions(make_log) -> None:
    rows = [("u", "a", "click"), ("u", "b", "buy")]
    with pytest.raises(ValueError, match="no timestamps"):
        prepare(make_log(rows), protocol="session", progress=False)
    assert prepare(make_log(rows), protocol="loo", progress=False).splits["test"]["target_items"] == [["b"]]


@st.composite
def random_logs(draw) -> pd.DataFrame:
    rows = []
    for user in range(draw(st.integers(1, 4))):
        time = 0
        for _ in range(draw(st.integers(1, 14))):
            time += draw(st.sampled_from([10, 100, 2 * HOUR]))
            # every event gets its own item, so a prompt's position in the log is unambiguous
            rows.append((f"u{user}", f"i{len(rows)}", draw(st.sampled_from(["click", "cart", "buy"])), time))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "behavior", "timestamp"])


@settings(max_examples=40, deadline=None)
@given(random_logs(), st.sampled_from(["session", "loo"]), st.sampled_from([None, 3]))
def test_no_held_out_event_reaches_training(frame: pd.DataFrame, protocol: str, max_history: int | None) -> None:
    """Training ends where the first held-out prompt ends, and prompts only look back."""
    data = prepare(frame, behaviors={"click": 0, "cart": 1, "buy": 2}, protocol=protocol, max_history=max_history,
                   min_user_events=1, on_duplicate="keep", progress=False)
    events = {user: list(zip(g.behavior, g.item_id)) for user, g in frame.groupby("user_id", sort=False)}
    train = {r["user_id"]: list(zip(r["behaviors"], r["items"])) for r in data.splits["train"]}
    prompts: dict[str, list[int]] = {}
    for name in ("validation", "test"):
        for row in data.splits[name]:
            history = list(zip(row["history_behaviors"], row["history_items"]))
            full = events[row["user_id"]]
            # the prompt is a contiguous run of the user's events, ending where the held-out part starts
            [end] = [e for e in range(len(history), len(full) + 1) if full[e - len(history):e] == history]
            prompts.setdefault(row["user_id"], []).append(end)
            # targets come after the prompt, under the requested behavior
            later = {item for behavior, item in full[end:] if behavior == row["target_behavior"]}
            assert set(row["target_items"]) <= later
    for user, sequence in train.items():
        if user in prompts:
            cutoff = min(prompts[user])
            window = cutoff if max_history is None else max_history + 1
            # the training sequence is exactly the tail of what precedes the earliest prompt's end
            assert sequence == events[user][:cutoff][-window:]
