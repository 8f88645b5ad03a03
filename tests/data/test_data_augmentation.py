"""Multi-behavior augmentation: the DESIGN.md formula, top level untouched, seeded, drop before truncation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamer_hf.data import BehaviorTable, prepare
from gamer_hf.data.augmentation import augmentation_keep_masks, drop_counts

TABLE = BehaviorTable.parse("pv<fav=cart<buy")  # hierarchy ranks 1, 2, 2, 3


@pytest.mark.parametrize(
    ("n", "rank", "k", "copies", "expected"),
    [(10, 1, 1, 2, 5), (10, 1, 2, 2, 10), (10, 2, 1, 2, 2), (10, 2, 2, 2, 5), (7, 2, 1, 3, 1), (3, 1, 1, 3, 1),
     (1, 2, 1, 1, 0)],
)
def test_drop_count_formula(n: int, rank: int, k: int, copies: int, expected: int) -> None:
    # floor(n_b * (k / x) / L_b)
    assert drop_counts(np.array([n]), np.array([rank]), np.array([True]), k, copies).tolist() == [expected]
    assert drop_counts(np.array([n]), np.array([rank]), np.array([False]), k, copies).tolist() == [0]


@st.composite
def user_logs(draw) -> tuple[np.ndarray, np.ndarray]:
    sizes = draw(st.lists(st.integers(1, 25), min_size=1, max_size=4))
    users = np.repeat(np.arange(len(sizes)), sizes)
    behaviors = np.array(draw(st.lists(st.integers(0, 3), min_size=len(users), max_size=len(users))))
    return users, behaviors


@settings(max_examples=80, deadline=None)
@given(user_logs(), st.integers(1, 4), st.integers(0, 10))
def test_views_drop_exactly_the_formula(log: tuple[np.ndarray, np.ndarray], copies: int, seed: int) -> None:
    users, behaviors = log
    masks = augmentation_keep_masks(users, behaviors, TABLE, copies, seed)
    assert masks.shape == (copies, len(users))
    for k, keep in enumerate(masks, start=1):
        for user in np.unique(users):
            for code, name in enumerate(TABLE.names):
                mine = (users == user) & (behaviors == code)
                n = int(mine.sum())
                dropped = int((mine & ~keep).sum())
                if name == "buy":
                    assert dropped == 0  # the top level is never dropped
                else:
                    assert dropped == (n * k) // (copies * TABLE.hierarchy_rank(name))
    again = augmentation_keep_masks(users, behaviors, TABLE, copies, seed)
    assert np.array_equal(masks, again)  # seeded


@pytest.mark.parametrize("cut", [7, 12, 19])  # boundaries between users
def test_blocks_of_users_draw_what_the_whole_history_draws(cut: int) -> None:
    users = np.repeat(np.arange(4), [7, 5, 7, 6])
    behaviors = np.arange(len(users)) % 3
    whole = augmentation_keep_masks(users, behaviors, TABLE, 3, seed=4)
    head = augmentation_keep_masks(users[:cut], behaviors[:cut], TABLE, 3, seed=4)
    tail = augmentation_keep_masks(users[cut:], behaviors[cut:], TABLE, 3, seed=4, offset=cut)
    assert np.array_equal(np.hstack([head, tail]), whole)


def test_different_seeds_choose_different_events() -> None:
    users = np.zeros(200, dtype=np.int64)
    behaviors = np.zeros(200, dtype=np.int64)
    first = augmentation_keep_masks(users, behaviors, TABLE, 2, seed=0)
    assert not np.array_equal(first, augmentation_keep_masks(users, behaviors, TABLE, 2, seed=1))


def _frame(events: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": "u", "item_id": [i for _, i in events], "behavior": [b for b, _ in events],
                         "timestamp": np.arange(len(events))})  # fmt: skip


def test_prepared_views_follow_the_formula_and_drop_before_truncation() -> None:
    # training history: 12 clicks, 4 carts, 2 buys, then a held-out buy (loo)
    history = [("pv", f"p{i}") for i in range(12)] + [("cart", f"c{i}") for i in range(4)]
    history += [("buy", "b0"), ("buy", "b1")]
    events = history + [("buy", "validation"), ("buy", "test")]
    data = prepare(_frame(events), behaviors=TABLE, protocol="loo", max_history=9, augment_copies=2, seed=3,
                   progress=False)
    rows = data.splits["train"]
    assert rows["user_id"] == ["u", "u", "u"]
    original, half, full = (list(zip(b, i)) for b, i in zip(rows["behaviors"], rows["items"]))
    assert original == history[-10:]
    # view k=1 drops floor(12/2/1)=6 pv and floor(4/2/2)=1 cart; k=2 drops all 12 pv and 2 carts
    for view, dropped_pv, dropped_cart in ((half, 6, 1), (full, 12, 2)):
        remaining = Counter(b for b, _ in history) - Counter({"pv": dropped_pv, "cart": dropped_cart})
        # dropping happened on the full history, then truncation to 10: 11 remain -> 10 (truncating
        # first would leave fewer than 10), 4 remain -> 4
        assert len(view) == min(10, sum(remaining.values()))
        assert [pair for pair in history if pair in view] == view  # a subsequence, in order
        assert {"b0", "b1"} <= {item for _, item in view}
    assert Counter(b for b, _ in full) == Counter({"cart": 2, "buy": 2})
    assert data.metadata["splits"]["train"]["augmented_rows"] == 2


def test_short_views_are_skipped_but_the_original_kept() -> None:
    # one pv then a held-out buy: the k=1 view keeps the pv (floor(1/2)=0), k=2 drops it and is empty
    data = prepare(_frame([("pv", "a"), ("buy", "v"), ("buy", "t")]), behaviors=TABLE, protocol="loo",
                   augment_copies=2, progress=False)
    assert data.splits["train"]["items"] == [["a"]]
    assert data.metadata["splits"]["train"]["skipped_short_views"] == 2
