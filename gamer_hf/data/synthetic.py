"""A synthetic multi-behavior shopping log with structure a sequence model can learn.

Why each ingredient is there:
- items belong to categories (groups) with brands, colors and materials, and their titles are made
  from those attributes, so text-based semantic IDs place similar items close together;
- users have a few favourite categories (latent taste), so per-user history predicts the future;
- browsing follows sequential patterns: the next item of a category's "series" (a fixed chain
  through the category) and jumps to complementary categories (a sparse category transition
  graph), so a sequence model beats popularity;
- users come back to items they viewed before, so the repeat baseline is strong, as in real logs;
- the funnel click -> cart -> buy acts on the same item, later in the same session, with realistic
  ratios (roughly 80% clicks, 12% carts, 8% buys), and revisits convert more often;
- sessions are separated by hours or days and events inside a session by seconds to minutes, so
  60-minute gap sessionization recovers them.

Everything is vectorized with numpy (a walk over step t for all users at once), seeded, and fast:
about a million events in a few seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["generate_synthetic", "write_synthetic", "SYNTHETIC_BEHAVIORS"]

SYNTHETIC_BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}

_NOUNS = [
    "running shoes", "hiking boots", "sandals", "rain jacket", "wool sweater", "denim jeans", "t-shirt",
    "backpack", "wireless earbuds", "headphones", "smartwatch", "phone case", "phone charger",
    "bluetooth speaker", "laptop sleeve", "desk lamp", "office chair", "coffee maker", "coffee beans",
    "tea kettle", "frying pan", "chef knife", "cutting board", "water bottle", "yoga mat", "dumbbells",
    "tent", "sleeping bag", "camping stove", "face cream", "shampoo", "toothbrush", "bath towel",
    "bed sheets", "pillow", "throw blanket", "board game", "jigsaw puzzle", "notebook", "fountain pen",
]
_QUALIFIERS = ["", "kids", "pro", "travel", "eco", "premium", "compact", "classic", "sport", "deluxe"]
_COLORS = ["black", "white", "navy", "red", "green", "grey", "beige", "blue", "pink", "olive"]
_MATERIALS = ["lightweight", "waterproof", "organic", "recycled", "ergonomic", "durable", "soft", "slim",
              "insulated", "handmade"]
_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "sa", "lu", "nex", "ol", "dri", "pa", "zen", "ko", "vi", "ta"]


def _category_names(count: int) -> list[str]:
    names = [f"{q} {n}".strip() for q in _QUALIFIERS for n in _NOUNS]
    if count > len(names):
        names += [f"{name} {i // len(names) + 1}" for i, name in enumerate(names * (count // len(names)))]
    return names[:count]


def _brand_names(rng: np.random.Generator, count: int) -> list[str]:
    brands: list[str] = []
    seen: set[str] = set()
    while len(brands) < count:
        parts = rng.choice(_SYLLABLES, size=rng.integers(2, 4))
        name = "".join(parts).capitalize()
        if name not in seen:
            seen.add(name)
            brands.append(name)
    return brands


def _items(rng: np.random.Generator, num_items: int, num_groups: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Item table plus each item's group and its popularity weight."""
    group = np.sort(rng.integers(0, num_groups, num_items))
    group[:num_groups] = np.arange(num_groups)  # every group has at least one item
    group.sort()
    brands = _brand_names(rng, max(8, num_groups // 2))
    brand_of_group = rng.integers(0, len(brands), size=(num_groups, 4))  # each category: 4 brands
    brand = brand_of_group[group, rng.integers(0, 4, num_items)]
    color = rng.integers(0, len(_COLORS), num_items)
    material = rng.integers(0, len(_MATERIALS), num_items)
    categories = np.array(_category_names(num_groups), dtype=object)
    brand_names = np.array(brands, dtype=object)
    model = rng.integers(100, 999, num_items).astype(str)
    titles = (brand_names[brand] + " " + np.array(_MATERIALS, dtype=object)[material] + " "
              + np.array(_COLORS, dtype=object)[color] + " " + categories[group] + " " + model)
    ids = (rng.choice(900_000, size=num_items, replace=False) + 100_000).astype(str)
    table = pd.DataFrame({"item_id": ids, "title": titles.astype(str), "category": categories[group].astype(str),
                          "brand": brand_names[brand].astype(str), "color": np.array(_COLORS)[color]})
    popularity = rng.pareto(1.2, num_items) + 1.0
    return table, group, popularity


def generate_synthetic(
    num_users: int = 2000,
    num_items: int = 1000,
    *,
    num_groups: int | None = None,
    sessions_per_user: float = 4.0,
    clicks_per_session: float = 6.0,
    seed: int = 0,
    start: str = "2024-01-01",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events (user_id, item_id, behavior, timestamp in unix seconds) and items (item_id, title,
    category, brand, color). Expected size: num_users * sessions_per_user * clicks_per_session
    clicks, plus about 25% cart and buy events. Behaviors: click < cart < buy."""
    if num_users < 1 or num_items < 2:
        raise ValueError("need at least one user and two items")
    rng = np.random.default_rng(seed)
    groups = num_groups or max(2, min(len(_NOUNS) * len(_QUALIFIERS), num_items // 25))
    items, group, popularity = _items(rng, num_items, groups)

    # category structure: popularity sampling inside a group, a "series" chain, complementary groups
    group_start = np.searchsorted(group, np.arange(groups + 1))
    cumulative = np.cumsum(popularity)
    low = np.r_[0.0, cumulative][group_start[:-1]]
    high = cumulative[group_start[1:] - 1]
    series = np.empty(num_items, dtype=np.int64)
    for g in range(groups):  # one permutation per category: small loop over groups, not events
        members = np.arange(group_start[g], group_start[g + 1])
        chain = rng.permutation(members)
        series[chain] = np.roll(chain, -1)
    successors = rng.integers(0, groups, size=(groups, 2))

    def popular_in(g: np.ndarray) -> np.ndarray:
        target = low[g] + rng.random(g.size) * (high[g] - low[g])
        return np.minimum(np.searchsorted(cumulative, target, side="right"), group_start[g + 1] - 1)

    # users: three favourite categories with Dirichlet weights
    favourites = rng.integers(0, groups, size=(num_users, 3))
    taste = np.cumsum(rng.dirichlet([1.0, 0.6, 0.3], size=num_users), axis=1)

    def from_taste(users: np.ndarray) -> np.ndarray:
        pick = (rng.random(users.size)[:, None] > taste[users]).sum(axis=1).clip(max=2)
        return popular_in(favourites[users, pick])

    sessions = 1 + rng.poisson(max(sessions_per_user - 1.0, 0.0), num_users).clip(max=40)
    session_user = np.repeat(np.arange(num_users), sessions)
    lengths = rng.geometric(1.0 / max(clicks_per_session, 1.0), session_user.size).clip(max=60)
    clicks = np.bincount(session_user, weights=lengths, minlength=num_users).astype(np.int64)
    offsets = np.r_[0, np.cumsum(clicks)[:-1]]  # clicks live in one flat array, user after user
    total = int(clicks.sum())
    click_new_session = np.zeros(total, dtype=bool)
    click_new_session[np.cumsum(lengths) - lengths] = True
    click_item = np.zeros(total, dtype=np.int64)
    click_revisit = np.zeros(total, dtype=bool)

    # the walk: step t for every user that still has clicks left (longest users first)
    by_length = np.argsort(-clicks, kind="stable")
    for t in range(int(clicks.max())):
        users = by_length[: np.searchsorted(-clicks[by_length], -t, side="left")]
        position = offsets[users] + t
        if t == 0:
            click_item[position] = from_taste(users)
            continue
        previous = click_item[position - 1]
        roll = rng.random(users.size)
        roll[click_new_session[position] & (rng.random(users.size) < 0.5)] = 1.0  # new session: often fresh taste
        choice = from_taste(users)
        same = roll < 0.80
        choice[same] = popular_in(group[previous[same]])
        jump = roll < 0.62
        choice[jump] = popular_in(successors[group[previous[jump]], rng.integers(0, 2, int(jump.sum()))])
        chain = roll < 0.45
        choice[chain] = series[previous[chain]]
        back = roll < 0.15
        choice[back] = click_item[offsets[users[back]] + (rng.random(int(back.sum())) * t).astype(np.int64)]
        click_item[position] = choice
        click_revisit[position[back]] = True
    click_user = np.repeat(np.arange(num_users), clicks)

    # time: users start within 60 days; sessions hours to days apart; clicks seconds to minutes apart
    gaps = np.where(click_new_session, 7200 + rng.exponential(2 * 86400, click_user.size),
                    10 + rng.exponential(90, click_user.size).clip(max=1800))
    first_of_user = np.r_[True, click_user[1:] != click_user[:-1]]
    gaps[first_of_user] = rng.uniform(0, 60 * 86400, num_users)[click_user[first_of_user]]
    cumulative_gaps = np.cumsum(gaps)
    offset = cumulative_gaps - gaps
    base = np.repeat(offset[first_of_user], clicks)
    click_time = pd.Timestamp(start, tz="UTC").timestamp() + (cumulative_gaps - base)
    following = np.r_[gaps[1:], 60.0]
    following = np.where(np.r_[click_new_session[1:], True] | np.r_[first_of_user[1:], True], 60.0, following)

    # funnel on the same item inside the session: cart then buy before the next click
    quality = 0.2 + 1.6 * rng.beta(3, 3, num_items)  # item conversion propensity, mean 1
    cart = rng.random(click_user.size) < np.where(click_revisit, 0.30, 0.12) * quality[click_item]
    buy = cart & (rng.random(click_user.size) < 0.6 * quality[click_item].clip(max=1.5))
    user = np.concatenate([click_user, click_user[cart], click_user[buy]])
    item = np.concatenate([click_item, click_item[cart], click_item[buy]])
    behavior = np.concatenate([np.zeros(click_user.size, np.int8), np.ones(int(cart.sum()), np.int8),
                               np.full(int(buy.sum()), 2, np.int8)])
    time = np.concatenate([click_time, click_time[cart] + 0.3 * following[cart],
                           click_time[buy] + 0.6 * following[buy]])
    order = np.lexsort((behavior, time, user))
    user_ids = (rng.choice(9_000_000, size=num_users, replace=False) + 1_000_000).astype(str)
    events = pa.table({
        "user_id": pa.array(user_ids).take(pa.array(user[order])),
        "item_id": pa.array(items["item_id"].to_numpy().astype(str)).take(pa.array(item[order])),
        "behavior": pa.array(list(SYNTHETIC_BEHAVIORS)).take(pa.array(behavior[order])),
        "timestamp": pa.array(np.floor(time[order]).astype(np.int64)),
    }).to_pandas()
    return events, items


def write_synthetic(folder: str | os.PathLike, events: pd.DataFrame, items: pd.DataFrame,
                    *, parameters: dict[str, Any] | None = None) -> Path:
    """Write the canonical folder layout (events.csv.gz, items.csv.gz, meta.json) read by format "gamer"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gzip = {"method": "gzip", "compresslevel": 1}
    for name, frame in (("events.csv.gz", events), ("items.csv.gz", items)):
        tmp = folder / f".{name}.tmp"
        frame.to_csv(tmp, index=False, compression=gzip)
        os.replace(tmp, folder / name)
    counts = events["behavior"].value_counts()
    meta = {
        "origin": "gamer_hf.data.synthetic.generate_synthetic",
        "parameters": parameters or {},
        "timestamps": "unix seconds",
        "item_side_info": "items.csv.gz: title, category, brand, color",
        "stats": {
            "users": int(events["user_id"].nunique()),
            "items": int(events["item_id"].nunique()),
            "interactions": len(events),
            "per_behavior": {b: int(counts.get(b, 0)) for b in SYNTHETIC_BEHAVIORS},
            "behavior_order_low_to_high": list(SYNTHETIC_BEHAVIORS),
        },
    }
    tmp = folder / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "meta.json")
    return folder
