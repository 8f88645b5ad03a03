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

import gzip
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = ["generate_synthetic", "write_synthetic", "write_synthetic_log", "write_taobao_shaped", "Funnel", "FUNNELS",
           "SYNTHETIC_BEHAVIORS", "TAOBAO_SHAPE", "BLOCK_USERS"]

SYNTHETIC_BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}


@dataclass(frozen=True)
class Funnel:
    """What follows a click on the same item later in its session, and how often.

    Rates are per click (first view, revisit) or per cart, times the item's conversion quality
    (mean 1). `fav` is drawn after cart and buy, so a funnel without it keeps the click-cart-buy
    logs of earlier releases for a seed.
    """

    click: str = "click"
    cart: str = "cart"
    buy: str = "buy"
    cart_rate: tuple[float, float] = (0.12, 0.30)
    buy_rate: float = 0.6
    fav: str | None = None
    fav_rate: tuple[float, float] = (0.0, 0.0)

    @property
    def behaviors(self) -> list[str]:
        """Names low to high, in the order of the codes `_user_events` gives them."""
        return [self.click, *([self.fav] if self.fav else []), self.cart, self.buy]


FUNNELS = {
    "click_cart_buy": Funnel(),
    # Taobao UserBehavior's shares (about 89.7% pv, 2.9% fav, 5.5% cart, 2.0% buy): per pv 6.1% carts,
    # 3.2% favs, and buy/cart 0.36; this walk revisits about 15% of clicks, hence the first-view rates
    "taobao": Funnel(click="pv", cart_rate=(0.05, 0.125), buy_rate=0.33, fav="fav", fav_rate=(0.026, 0.065)),
}

# 1M users, 4M items, about 100M events (~90 pv per user over ~12 sessions), pv/fav/cart/buy, written as
# Tianchi's header-less UserBehavior.csv (user, item, category, behavior, unix seconds)
TAOBAO_SHAPE: dict[str, Any] = {"num_users": 1_000_000, "items_per_user": 4, "num_groups": 4000,
                                "sessions_per_user": 12.0, "clicks_per_session": 7.5, "funnel": "taobao",
                                "layout": "taobao"}

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


@dataclass
class _Catalogue:
    """Items as numbers (attributes, popularity, category structure); titles are made on demand."""

    ids: np.ndarray  # int64 item ids
    group: np.ndarray
    brand: np.ndarray
    color: np.ndarray
    material: np.ndarray
    model: np.ndarray
    categories: np.ndarray  # object: category name per group
    brand_names: np.ndarray  # object
    popularity: np.ndarray
    series: np.ndarray  # next item of each item's category chain
    successors: np.ndarray  # [groups, 2] complementary categories
    group_start: np.ndarray  # items are sorted by group: group g is group_start[g]:group_start[g + 1]
    cumulative: np.ndarray  # cumulative popularity, for sampling by popularity inside a group

    @property
    def num_groups(self) -> int:
        return len(self.categories)

    def table(self, rows: slice = slice(None)) -> pd.DataFrame:
        """The item table (item_id, title, category, brand, color) of `rows`."""
        group, brand, color = self.group[rows], self.brand[rows], self.color[rows]
        titles = (self.brand_names[brand] + " " + np.array(_MATERIALS, dtype=object)[self.material[rows]] + " "
                  + np.array(_COLORS, dtype=object)[color] + " " + self.categories[group] + " "
                  + self.model[rows].astype(str))
        return pd.DataFrame({"item_id": self.ids[rows].astype(str), "title": titles.astype(str),
                             "category": self.categories[group].astype(str),
                             "brand": self.brand_names[brand].astype(str), "color": np.array(_COLORS)[color]})


def _distinct_draw(rng: np.random.Generator, space: int, size: int) -> np.ndarray:
    """`size` distinct integers of [0, space) in random order, in memory O(size): `rng.choice(space, size,
    replace=False)` shuffles an arange of the whole space here (800 MB for Taobao's 4M ids among 10**8)."""
    drawn = np.zeros(0, dtype=np.int64)
    while len(drawn) < size:  # a few percent collide when size is a tenth of the space: one round, rarely two
        drawn = np.sort(np.concatenate([drawn, rng.integers(0, space, size=size + size // 8 + 16)]))
        drawn = drawn[np.flatnonzero(np.diff(drawn, prepend=-1))]  # distinct (np.unique hashes: slower, larger)
    return rng.permutation(drawn)[:size]


def _catalogue(rng: np.random.Generator, num_items: int, num_groups: int) -> _Catalogue:
    group = np.sort(rng.integers(0, num_groups, num_items))
    group[:num_groups] = np.arange(num_groups)  # every group has at least one item
    group.sort()
    brands = _brand_names(rng, max(8, num_groups // 2))
    brand_of_group = rng.integers(0, len(brands), size=(num_groups, 4))  # each category: 4 brands
    brand = brand_of_group[group, rng.integers(0, 4, num_items)]
    color = rng.integers(0, len(_COLORS), num_items)
    material = rng.integers(0, len(_MATERIALS), num_items)
    model = rng.integers(100, 999, num_items)
    # six-digit ids up to 900k items, wider beyond (Taobao-sized catalogues)
    if num_items <= 900_000:
        ids = rng.choice(900_000, size=num_items, replace=False) + 100_000
    else:
        ids = _distinct_draw(rng, 10 ** len(str(10 * num_items)) - 100_000, num_items) + 100_000
    popularity = rng.pareto(1.2, num_items) + 1.0
    group_start = np.searchsorted(group, np.arange(num_groups + 1))
    series = np.empty(num_items, dtype=np.int64)
    for g in range(num_groups):  # one permutation per category: small loop over groups, not events
        chain = rng.permutation(np.arange(group_start[g], group_start[g + 1]))
        series[chain] = np.roll(chain, -1)
    successors = rng.integers(0, num_groups, size=(num_groups, 2))
    return _Catalogue(ids, group, brand, color, material, model, np.array(_category_names(num_groups), dtype=object),
                      np.array(brands, dtype=object), popularity, series, successors, group_start,
                      np.cumsum(popularity))


def _groups(num_items: int, num_groups: int | None) -> int:
    return num_groups or max(2, min(len(_NOUNS) * len(_QUALIFIERS), num_items // 25))


def _user_events(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    num_users: int,
    *,
    sessions_per_user: float,
    clicks_per_session: float,
    start: str,
    quality: np.ndarray | None = None,
    funnel: Funnel = FUNNELS["click_cart_buy"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, behavior code in `funnel.behaviors`, time) of `num_users` users, sorted by user, time, behavior.

    `quality` (each item's conversion propensity) is drawn here when not given, where the
    single-block generator has always drawn it, so that its logs stay the same for a seed.
    """
    group, series, successors = catalogue.group, catalogue.series, catalogue.successors
    groups, group_start, cumulative = catalogue.num_groups, catalogue.group_start, catalogue.cumulative
    low = np.r_[0.0, cumulative][group_start[:-1]]
    high = cumulative[group_start[1:] - 1]

    def popular_in(g: np.ndarray) -> np.ndarray:
        target = low[g] + rng.random(g.size) * (high[g] - low[g])
        return np.minimum(_sorted_search(cumulative, target), group_start[g + 1] - 1)

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

    # funnel on the same item inside the session: cart then buy (and fav) before the next click
    if quality is None:
        quality = _quality(rng, len(group))
    conversion = quality[click_item]
    cart = rng.random(click_user.size) < _per_click(funnel.cart_rate, click_revisit) * conversion
    buy = cart & (rng.random(click_user.size) < funnel.buy_rate * conversion.clip(max=1.5))
    follow = [(cart, 0.3), (buy, 0.6)]  # (which clicks, where in the gap to the next click)
    if funnel.fav:
        follow.insert(0, (rng.random(click_user.size) < _per_click(funnel.fav_rate, click_revisit) * conversion, 0.15))
    user = np.concatenate([click_user, *(click_user[taken] for taken, _ in follow)])
    item = np.concatenate([click_item, *(click_item[taken] for taken, _ in follow)])
    behavior = np.concatenate([np.zeros(click_user.size, np.int8),
                               *(np.full(int(taken.sum()), code, np.int8) for code, (taken, _) in enumerate(follow, 1))])
    time = np.concatenate([click_time, *(click_time[taken] + share * following[taken] for taken, share in follow)])
    order = np.lexsort((behavior, time, user))
    return user[order], item[order], behavior[order], np.floor(time[order]).astype(np.int64)


def _per_click(rate: tuple[float, float], revisit: np.ndarray) -> np.ndarray:
    first_view, again = rate
    return np.where(revisit, again, first_view)


def _sorted_search(cumulative: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.searchsorted(side="right") with the values searched in ascending order: the same answer,
    about 3x faster on a catalogue of 500k items (the binary searches stay in cache)."""
    order = np.argsort(values)
    found = np.empty(values.size, dtype=np.int64)
    found[order] = np.searchsorted(cumulative, values[order], side="right")
    return found


def _quality(rng: np.random.Generator, num_items: int) -> np.ndarray:
    return 0.2 + 1.6 * rng.beta(3, 3, num_items)  # item conversion propensity, mean 1


def _events_table(user_ids: pa.Array, item_ids: pa.Array, user: np.ndarray, item: np.ndarray,
                  behavior: np.ndarray, time: np.ndarray, *, names: list[str] = list(SYNTHETIC_BEHAVIORS),
                  category: np.ndarray | None = None) -> pa.Table:
    """The events as written; with `category` (an item's group), in Taobao's column order."""
    columns = {"user_id": user_ids.take(pa.array(user)), "item_id": item_ids.take(pa.array(item))}
    if category is not None:
        columns["category_id"] = pa.array(category[item])
    columns |= {"behavior": pa.array(names).take(pa.array(behavior)), "timestamp": pa.array(time)}
    return pa.table(columns)


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
    clicks, plus about 25% cart and buy events. Behaviors: click < cart < buy. In memory: use
    `write_synthetic_log` for logs of tens of millions of events."""
    if num_users < 1 or num_items < 2:
        raise ValueError("need at least one user and two items")
    rng = np.random.default_rng(seed)
    catalogue = _catalogue(rng, num_items, _groups(num_items, num_groups))
    user, item, behavior, time = _user_events(rng, catalogue, num_users, sessions_per_user=sessions_per_user,
                                              clicks_per_session=clicks_per_session, start=start)
    user_ids = pa.array((rng.choice(9_000_000, size=num_users, replace=False) + 1_000_000).astype(str))
    events = _events_table(user_ids, pa.array(catalogue.ids.astype(str)), user, item, behavior, time)
    return events.to_pandas(), catalogue.table()


BLOCK_USERS = 4096  # users per random stream in write_synthetic_log: the unit its randomness comes in
_USER_ID_SPACE, _USER_ID_STEP = 9_000_000, 7_368_787  # coprime: user u gets 1_000_000 + u * step mod space


def write_synthetic_log(
    folder: str | os.PathLike,
    num_users: int,
    num_items: int,
    *,
    num_groups: int | None = None,
    sessions_per_user: float = 4.0,
    clicks_per_session: float = 6.0,
    seed: int = 0,
    start: str = "2024-01-01",
    chunk_blocks: int = 16,
    funnel: str = "click_cart_buy",
    layout: str = "gamer",
) -> Path:
    """Write a synthetic log of any size in bounded memory, in the folder layout `write_synthetic` makes.

    Users come in blocks of BLOCK_USERS, each drawn from its own generator (seed, block), so the
    log depends on the seed and sizes only, never on `chunk_blocks` (how many blocks are built
    and appended at once: the memory knob). The item catalogue is `generate_synthetic`'s for the
    same seed and sizes; the events are not (they come from per-block streams). Memory grows with
    the catalogue and the chunk, not with the number of events: one chunk is compressed and
    written on a second thread while the next is drawn.

    `funnel` names a FUNNELS entry (the behaviors after a click). `layout` "gamer" writes
    events.csv.gz with a header; "taobao" writes Tianchi's header-less UserBehavior.csv.gz
    (user, item, category, behavior, unix seconds), which `read_events` reads as format "taobao".
    Both also write items.csv.gz (titles for semantic IDs) and meta.json.
    """
    if num_users < 1 or num_items < 2:
        raise ValueError("need at least one user and two items")
    if num_users > _USER_ID_SPACE:
        raise ValueError(f"at most {_USER_ID_SPACE:,} users (their ids are 7 digits), got {num_users:,}")
    if chunk_blocks < 1:
        raise ValueError(f"chunk_blocks must be >= 1, got {chunk_blocks}")
    if num_groups is not None and not 2 <= num_groups <= num_items:
        raise ValueError(f"num_groups must be between 2 and num_items ({num_items:,}), got {num_groups:,}")
    if funnel not in FUNNELS:
        raise ValueError(f"unknown funnel {funnel!r}; choose one of {sorted(FUNNELS)}")
    if layout not in _LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(_LAYOUTS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps, names = FUNNELS[funnel], FUNNELS[funnel].behaviors
    rng = np.random.default_rng(seed)
    catalogue = _catalogue(rng, num_items, _groups(num_items, num_groups))
    quality = _quality(rng, num_items)
    item_ids = pa.array(catalogue.ids.astype(str))
    category = catalogue.group if layout == "taobao" else None
    seen = np.zeros(num_items, dtype=bool)
    per_behavior = np.zeros(len(names), dtype=np.int64)
    blocks = range(-(-num_users // BLOCK_USERS))
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with _atomic_gzip(folder / _LAYOUTS[layout]) as handle, ThreadPoolExecutor(1) as writer:
        if layout == "gamer":
            handle.write(b"user_id,item_id,behavior,timestamp\n")
        written = None
        for first in range(0, len(blocks), chunk_blocks):
            parts = []
            for block in blocks[first:first + chunk_blocks]:
                users = min(BLOCK_USERS, num_users - block * BLOCK_USERS)
                user, item, behavior, time = _user_events(
                    np.random.default_rng([seed, block]), catalogue, users, sessions_per_user=sessions_per_user,
                    clicks_per_session=clicks_per_session, start=start, quality=quality, funnel=steps)
                parts.append((user + block * BLOCK_USERS, item, behavior, time))
            user, item, behavior, time = (np.concatenate(column) for column in zip(*parts))
            user_ids = pa.array((1_000_000 + np.unique(user) * _USER_ID_STEP % _USER_ID_SPACE).astype(str))
            table = _events_table(user_ids, item_ids, user - user[0], item, behavior, time, names=names,
                                  category=category)
            if written is not None:
                written.result()  # at most one chunk waits for the writer: memory stays two chunks
            written = writer.submit(pacsv.write_csv, table, handle, write_options=options)
            seen[item] = True
            per_behavior += np.bincount(behavior, minlength=len(per_behavior))
        if written is not None:
            written.result()
    with _atomic_gzip(folder / "items.csv.gz") as handle:
        for first in range(0, num_items, 1 << 18):
            catalogue.table(slice(first, first + (1 << 18))).to_csv(handle, index=False, header=first == 0)
    parameters = {"num_users": num_users, "num_items": num_items, "num_groups": num_groups,
                  "sessions_per_user": sessions_per_user, "clicks_per_session": clicks_per_session, "seed": seed,
                  "start": start, "block_users": BLOCK_USERS, "funnel": funnel, "layout": layout}
    stats = {"users": num_users, "items": int(seen.sum()), "interactions": int(per_behavior.sum()),
             "per_behavior": dict(zip(names, per_behavior.tolist()))}
    _write_meta(folder, "gamer_hf.data.synthetic.write_synthetic_log", parameters, stats, order=names)
    return folder


_LAYOUTS = {"gamer": "events.csv.gz", "taobao": "UserBehavior.csv.gz"}


def write_taobao_shaped(folder: str | os.PathLike, *, scale: float = 1.0, seed: int = 0, chunk_blocks: int = 16) -> Path:
    """A log shaped like Taobao UserBehavior (TAOBAO_SHAPE: 1M users, 4M items, ~100M events at scale 1),
    with `scale` times the users and items; read it with `read_events(folder / "UserBehavior.csv.gz")`."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    shape = dict(TAOBAO_SHAPE)
    num_users = max(1, round(shape.pop("num_users") * scale))
    num_items = max(2, num_users * shape.pop("items_per_user"))
    shape["num_groups"] = max(2, min(shape["num_groups"], num_items // 10))  # small scales: ~10 items a category
    return write_synthetic_log(folder, num_users, num_items, seed=seed, chunk_blocks=chunk_blocks, **shape)


@contextmanager
def _atomic_gzip(path: Path) -> Iterator[Any]:
    """A gzip stream (fast level 1) to a hidden temporary that replaces `path` only when complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with gzip.open(tmp, "wb", compresslevel=1) as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_synthetic(folder: str | os.PathLike, events: pd.DataFrame, items: pd.DataFrame,
                    *, parameters: dict[str, Any] | None = None) -> Path:
    """Write the canonical folder layout (events.csv.gz, items.csv.gz, meta.json) read by format "gamer"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("events.csv.gz", events), ("items.csv.gz", items)):
        with _atomic_gzip(folder / name) as handle:
            frame.to_csv(handle, index=False)
    counts = events["behavior"].value_counts()
    stats = {"users": int(events["user_id"].nunique()), "items": int(events["item_id"].nunique()),
             "interactions": len(events), "per_behavior": {b: int(counts.get(b, 0)) for b in SYNTHETIC_BEHAVIORS}}
    _write_meta(folder, "gamer_hf.data.synthetic.generate_synthetic", parameters or {}, stats)
    return folder


def _write_meta(folder: Path, origin: str, parameters: dict[str, Any], stats: dict[str, Any],
                order: list[str] = list(SYNTHETIC_BEHAVIORS)) -> None:
    meta = {
        "origin": origin,
        "parameters": parameters,
        "timestamps": "unix seconds",
        "item_side_info": "items.csv.gz: title, category, brand, color",
        "stats": {**stats, "behavior_order_low_to_high": order},
    }
    tmp = folder / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / "meta.json")
