"""Training profiles of items and the map that places items alone in every training sequence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gamer_hf.data import prepare
from gamer_hf.semantic_ids import item_embeddings, load_inputs
from gamer_hf.semantic_ids.collaborative import ItemPositions, sequences_from_events
from gamer_hf.semantic_ids.profiles import PROFILE_STATS, ProfileMap, item_profiles, profile_feature_names


def test_item_profiles_by_hand() -> None:
    sequences = [["a", "b", "a"], ["c"], ["c", "c", "x"]]  # x: outside the catalogue, still a position
    behaviors = np.array([0, 1, 2, 0, 1, 1, 0], dtype=np.int8)  # click, cart, buy per position
    positions = ItemPositions.encode(sequences, ["a", "b", "c", "never"])
    named = [dict(zip(profile_feature_names(["click", "cart", "buy"]), row))
             for row in item_profiles(positions, behaviors, 3).tolist()]
    a, b, c, never = named
    assert (a["share_click"], a["share_cart"], a["share_buy"]) == pytest.approx((0.5, 0.0, 0.5))
    assert (a["log_interactions"], a["log_sequences"], a["log_repeats"]) == pytest.approx((np.log(3), np.log(2), np.log(2)))
    assert (a["mean_position"], a["last_share"]) == pytest.approx((0.5, 0.5))  # positions 0 and 2 of 3
    assert (b["mean_position"], b["last_share"], b["share_cart"]) == pytest.approx((0.5, 0.0, 1.0))
    # c: alone in ["c"] (a sequence of one: position 0.5, and last) and at positions 0 and 1 of ["c", "c", "x"]
    assert (c["log_sequences"], c["log_repeats"], c["mean_position"]) == pytest.approx((np.log(3), np.log(1.5), (0.5 + 0.0 + 0.5) / 3))
    assert c["last_share"] == pytest.approx(1 / 3) and c["share_cart"] == pytest.approx(2 / 3)
    assert all(value == 0.0 for value in never.values())
    assert len(a) == 3 + len(PROFILE_STATS)


def test_profile_map_recovers_a_linear_map_and_says_when_there_is_none() -> None:
    rng = np.random.default_rng(0)
    profiles = rng.normal(size=(400, 6))
    linear = profiles @ rng.normal(size=(6, 8)) + 0.05 * rng.normal(size=(400, 8))
    fitted = ProfileMap.fit(profiles, linear)
    assert fitted.report["model"].startswith("ridge") and fitted.report["held_out_r2"] > 0.95
    assert fitted.report["held_out_cosine"] > 0.95 > fitted.report["mean_embedding_cosine"]
    noise = ProfileMap.fit(profiles, rng.normal(size=(400, 8)))  # profiles say nothing: chance, reported as such
    assert noise.report["held_out_r2"] < 0.05
    rows = noise.embed(profiles[:50], seed=1)
    assert np.linalg.norm(rows, axis=1) == pytest.approx(1.0, rel=1e-5)
    assert len(np.unique(rows.round(5), axis=0)) == 50  # the residual spreads equal profiles apart
    assert (noise.embed(profiles[:50], seed=1) == rows).all()
    with pytest.raises(ValueError, match="at least 10 items"):
        ProfileMap.fit(profiles[:5], linear[:5])


@pytest.mark.realdata
def test_lone_items_get_profile_rows_on_real_data(data_dir: Path, tmp_path: Path) -> None:
    """400 real retail_beh_mbht users, prepared: every item alone in all its training sequences gets a
    profile row instead of a random one, and nothing else changes."""
    events = pd.read_csv(data_dir / "retail_beh_mbht" / "events.csv.gz", nrows=6000, dtype={"user_id": str, "item_id": str})
    events = events[events["user_id"].isin(events["user_id"].unique()[:400])]
    folder = tmp_path / "events"
    folder.mkdir()
    events.to_csv(folder / "events.csv.gz", index=False)
    shutil.copy(data_dir / "retail_beh_mbht" / "meta.json", folder)
    prepared = tmp_path / "prepared"
    prepare(folder, protocol="loo", out=prepared, max_history=20, progress=False)
    inputs = load_inputs(prepared)
    flat = [b for row in load_inputs(folder).sequences for b in row]  # raw: the same positions' behaviors too
    assert len(load_inputs(folder).position_behaviors) == len(flat)
    assert len(inputs.position_behaviors) == sum(len(seq) for seq in inputs.sequences)
    assert set(np.unique(inputs.position_behaviors)) <= set(range(len(inputs.behaviors)))
    kwargs = dict(kind="collaborative", sequences=inputs.sequences, dim=16)
    random_rows = item_embeddings(inputs.item_ids, **kwargs)
    mapped = item_embeddings(inputs.item_ids, **kwargs, lone_items="profile", position_behaviors=inputs.position_behaviors,
                             num_behaviors=len(inputs.behaviors))
    before, after = random_rows.coverage(), mapped.coverage()
    assert before["fallback_seen_alone"] == before["seen_alone"] == after["profile_items"] > 0
    assert after["fallback_seen_items"] == 0 and after["unseen_in_training"] == after["fallback_items"]
    assert after["profile_map"]["held_out_items"] > 0 and "held_out_r2" in after["profile_map"]
    lone = mapped.profile_mask
    assert (lone == random_rows.alone_in_training).all()
    assert (mapped.vectors[~lone] == random_rows.vectors[~lone]).all()  # learned and unseen rows are untouched
    assert not np.allclose(mapped.vectors[lone], random_rows.vectors[lone])
    with pytest.raises(ValueError, match="needs position_behaviors"):
        item_embeddings(inputs.item_ids, **kwargs, lone_items="profile")
    with pytest.raises(ValueError, match="unknown lone_items"):
        item_embeddings(inputs.item_ids, **kwargs, lone_items="mean")
    items = pd.DataFrame({"item_id": inputs.item_ids, "title": inputs.item_ids})
    with pytest.raises(ValueError, match="maps collaborative rows, and embedding 'text' is text only"):
        item_embeddings(inputs.item_ids, kind="text", items=items, dim=4, lone_items="profile")


def test_sequences_from_events_gives_the_behaviors_of_the_same_positions() -> None:
    events = pd.DataFrame({"user_id": ["u", "v", "u"], "item_id": ["a", "b", "c"], "behavior": ["buy", "click", "cart"],
                           "timestamp": [2, 0, 1]})
    assert sequences_from_events(events) == [["c", "a"], ["b"]]
    assert sequences_from_events(events, "behavior") == [["cart", "buy"], ["click"]]
