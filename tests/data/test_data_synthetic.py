"""The synthetic log: seeded, funnel-consistent, sessioned, with repeats and learnable sequences."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gamer_hf.data import (SYNTHETIC_BEHAVIORS, generate_synthetic, read_events, synthetic, write_synthetic,
                           write_synthetic_log)


@pytest.fixture(scope="module")
def log() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_synthetic(num_users=600, num_items=400, seed=7)


def test_same_seed_same_log_other_seed_other_log(log) -> None:
    events, items = generate_synthetic(num_users=600, num_items=400, seed=7)
    pd.testing.assert_frame_equal(events, log[0])
    pd.testing.assert_frame_equal(items, log[1])
    other, _ = generate_synthetic(num_users=600, num_items=400, seed=8)
    assert not other.equals(events)


def test_tables_and_ordering(log) -> None:
    events, items = log
    assert list(events.columns) == ["user_id", "item_id", "behavior", "timestamp"]
    assert list(items.columns) == ["item_id", "title", "category", "brand", "color"]
    assert set(events["behavior"]) == set(SYNTHETIC_BEHAVIORS)
    assert events["user_id"].nunique() == 600 and items["item_id"].is_unique
    assert set(events["item_id"]) <= set(items["item_id"])
    first_seen = events.drop_duplicates("user_id").index
    blocks = np.diff(first_seen.to_numpy())
    assert (blocks > 0).all() and events.groupby("user_id", sort=False)["timestamp"].is_monotonic_increasing.all()
    # titles are built from the attributes, so text embeddings can see them
    assert all(row.brand in row.title and row.category in row.title and row.color in row.title
               for row in items.itertuples())


def test_funnel_click_then_cart_then_buy_on_the_same_item(log) -> None:
    events, _ = log
    shares = events["behavior"].value_counts(normalize=True)
    assert shares["click"] > 0.7 and 0.05 < shares["cart"] < 0.2 and 0.03 < shares["buy"] < shares["cart"]
    for user, group in events.groupby("user_id", sort=False):
        seen: dict[str, set[str]] = {"click": set(), "cart": set()}
        for item, behavior in zip(group["item_id"], group["behavior"]):
            if behavior == "cart":
                assert item in seen["click"], (user, item)
            if behavior == "buy":
                assert item in seen["cart"], (user, item)
            if behavior != "buy":
                seen[behavior].add(item)


def test_sessions_are_separated_by_long_pauses(log) -> None:
    events, _ = log
    gaps = events.groupby("user_id", sort=False)["timestamp"].diff().dropna()
    assert not gaps.between(1900, 7100).any()  # inside a session <= ~30 min, between sessions >= 2 h
    sessions = (gaps > 3600).sum() + events["user_id"].nunique()
    assert 3 * 600 < sessions < 5 * 600  # about sessions_per_user=4 per user


def test_users_return_to_items_they_viewed(log) -> None:
    clicks = log[0][log[0]["behavior"] == "click"]
    repeat = clicks.duplicated(["user_id", "item_id"]).mean()
    assert repeat > 0.15


def test_sequences_beat_popularity(log) -> None:
    """A next-click bigram model fitted on half the users predicts the other half far better than popularity."""
    clicks = log[0][log[0]["behavior"] == "click"]
    users = clicks["user_id"].unique()
    fit, held = clicks[clicks["user_id"].isin(users[::2])], clicks[~clicks["user_id"].isin(users[::2])]

    def pairs(frame: pd.DataFrame) -> pd.DataFrame:
        shifted = frame.groupby("user_id", sort=False)["item_id"].shift(-1)
        return pd.DataFrame({"prev": frame["item_id"], "next": shifted}).dropna()

    bigrams = pairs(fit).groupby("prev")["next"].agg(lambda s: [i for i, _ in Counter(s).most_common(10)])
    popular = set(fit["item_id"].value_counts().index[:10])
    test = pairs(held)
    sequence_hits = np.mean([n in bigrams.get(p, []) for p, n in zip(test["prev"], test["next"])])
    popularity_hits = np.mean(test["next"].isin(popular))
    assert sequence_hits > 2 * popularity_hits


def test_written_folder_reads_back(tmp_path: Path, log) -> None:
    events, items = log
    folder = write_synthetic(tmp_path / "synthetic", events.head(500), items, parameters={"seed": 7})
    read = read_events(folder)
    assert read.format == "gamer" and read.behaviors.levels == SYNTHETIC_BEHAVIORS
    assert read.events.num_rows == 500 and read.items is not None and len(read.items) == len(items)
    assert sorted(p.name for p in folder.iterdir()) == ["events.csv.gz", "items.csv.gz", "meta.json"]


# ----- write_synthetic_log: large logs in bounded memory -----

@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Blocks of 64 users so that a few hundred users span several blocks and chunks."""
    monkeypatch.setattr(synthetic, "BLOCK_USERS", 64)
    return 64


def _contents(folder: Path) -> dict[str, bytes]:
    return {name: gzip.decompress((folder / name).read_bytes()) for name in ("events.csv.gz", "items.csv.gz")}


def test_chunked_log_does_not_depend_on_chunking(tmp_path: Path, small_blocks: int) -> None:
    written = {chunk: write_synthetic_log(tmp_path / str(chunk), 300, 150, seed=4, chunk_blocks=chunk)
               for chunk in (1, 2, 10)}
    reference = _contents(written[1])
    for folder in written.values():
        assert _contents(folder) == reference
        assert sorted(p.name for p in folder.iterdir()) == ["events.csv.gz", "items.csv.gz", "meta.json"]
    other = write_synthetic_log(tmp_path / "other", 300, 150, seed=5)
    assert _contents(other)["events.csv.gz"] != reference["events.csv.gz"]


def test_chunked_log_reads_back_with_its_stats_and_structure(tmp_path: Path, small_blocks: int) -> None:
    folder = write_synthetic_log(tmp_path / "log", 300, 150, seed=4, chunk_blocks=2)
    stats = json.loads((folder / "meta.json").read_text())["stats"]
    log = read_events(folder)
    events = log.events.to_pandas()
    assert log.format == "gamer" and log.behaviors.levels == SYNTHETIC_BEHAVIORS
    assert len(events) == stats["interactions"] and events["user_id"].nunique() == stats["users"] == 300
    assert events["item_id"].nunique() == stats["items"] and len(log.items) == 150
    assert events["behavior"].value_counts().to_dict() == stats["per_behavior"]
    _, items = generate_synthetic(num_users=300, num_items=150, seed=4)
    pd.testing.assert_frame_equal(log.items.astype(str), items.astype(str))  # the same catalogue
    gaps = events.groupby("user_id", sort=False)["timestamp"].diff().dropna()
    assert not gaps.between(1900, 7100).any()  # sessions as in generate_synthetic
    carts = events[events["behavior"] == "cart"].merge(events[events["behavior"] == "click"], on=["user_id", "item_id"])
    assert (carts["timestamp_y"] <= carts["timestamp_x"]).groupby([carts["user_id"], carts["item_id"]]).any().all()


@pytest.mark.parametrize(("options", "message"), [({"chunk_blocks": 0}, "chunk_blocks"),
                                                  ({"num_users": 9_000_001}, "at most"),
                                                  ({"num_items": 1}, "two items")])
def test_chunked_log_refuses_bad_sizes(tmp_path: Path, options: dict, message: str) -> None:
    arguments = {"num_users": 10, "num_items": 10, **options}
    with pytest.raises(ValueError, match=message):
        write_synthetic_log(tmp_path / "log", arguments.pop("num_users"), arguments.pop("num_items"), **arguments)
    assert not (tmp_path / "log").exists()


# ----- the Taobao-shaped preset -----

def test_taobao_shaped_log_reads_as_taobao_with_its_behavior_shares(tmp_path: Path, small_blocks: int) -> None:
    folder = synthetic.write_taobao_shaped(tmp_path / "taobao", scale=0.0002, chunk_blocks=2)  # 200 users
    meta = json.loads((folder / "meta.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == ["UserBehavior.csv.gz", "items.csv.gz", "meta.json"]
    assert meta["parameters"]["num_items"] == 4 * meta["parameters"]["num_users"] == 800
    log = read_events(folder / "UserBehavior.csv.gz")
    events = log.events.to_pandas()
    assert log.format == "taobao" and set(events["behavior"]) == {"pv", "fav", "cart", "buy"}
    assert len(events) == meta["stats"]["interactions"] and events["user_id"].nunique() == 200
    assert 80 < len(events) / 200 < 125  # about 100 events per user, as Taobao's
    shares = events["behavior"].value_counts(normalize=True)  # Taobao: pv 89.7%, cart 5.5%, fav 2.9%, buy 2.0%
    assert 0.86 < shares["pv"] < 0.93 and 0.04 < shares["cart"] < 0.07
    assert 0.02 < shares["fav"] < 0.04 and 0.01 < shares["buy"] < 0.03
    assert meta["stats"]["behavior_order_low_to_high"] == ["pv", "fav", "cart", "buy"]
    first_line = gzip.decompress((folder / "UserBehavior.csv.gz").read_bytes()).split(b"\n", 1)[0].split(b",")
    assert len(first_line) == 5 and first_line[3] == b"pv"  # no header: user, item, category, behavior, time
    categories = log.items.set_index("item_id")["category_id"]
    titles = pd.read_csv(folder / "items.csv.gz", dtype=str).set_index("item_id")
    assert titles.loc[categories.index, "category"].groupby(categories.to_numpy()).nunique().eq(1).all()


def test_funnels_keep_the_click_cart_buy_log_of_earlier_releases(tmp_path: Path, small_blocks: int) -> None:
    """The default funnel draws what the generator drew before funnels existed: pinned by a digest of seed 4's log."""
    folder = write_synthetic_log(tmp_path / "log", 300, 150, seed=4, chunk_blocks=2)
    events = gzip.decompress((folder / "events.csv.gz").read_bytes())
    assert hashlib.sha256(events).hexdigest() == _CLICK_CART_BUY_SHA256


@pytest.mark.parametrize(("options", "message"), [({"funnel": "wishlist"}, "unknown funnel"),
                                                  ({"layout": "tmall"}, "unknown layout"),
                                                  ({"num_groups": 11}, "num_groups")])
def test_unknown_funnels_layouts_and_group_counts_are_refused(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic_log(tmp_path / "log", 10, 10, **options)


# sha256 of the events.csv.gz text of write_synthetic_log(300 users, 150 items, seed=4) in blocks of 64 users, as
# written before funnels and presets were added (numpy's Generator streams are stable across its releases)
_CLICK_CART_BUY_SHA256 = "beb63a826ecc85bb9ccbf43a8966c1f899eafffc918e2283ca471f2c8798760b"


@pytest.mark.parametrize(("space", "size"), [(1_000, 100), (1_000, 999), (10 ** 8, 5_000)])
def test_distinct_draw_is_seeded_distinct_in_range_and_shuffled(space: int, size: int) -> None:
    drawn = synthetic._distinct_draw(np.random.default_rng(3), space, size)
    assert len(drawn) == len(np.unique(drawn)) == size and drawn.min() >= 0 and drawn.max() < space
    assert np.array_equal(drawn, synthetic._distinct_draw(np.random.default_rng(3), space, size))
    assert not np.array_equal(drawn, np.sort(drawn))  # random order, as rng.choice gave
