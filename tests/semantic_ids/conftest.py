"""Small synthetic inputs for the semantic-ID tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def blobs() -> np.ndarray:
    """600 points in 8 well-separated Gaussian blobs of unequal size (16-d), so clustering has structure."""
    rng = np.random.default_rng(7)
    sizes = [200, 120, 80, 60, 50, 40, 30, 20]
    centers = rng.normal(scale=6.0, size=(len(sizes), 16))
    return np.concatenate([c + rng.normal(size=(n, 16)) for c, n in zip(centers, sizes)]).astype(np.float32)


@pytest.fixture(scope="session")
def item_ids(blobs: np.ndarray) -> list[str]:
    return [f"i{i}" for i in range(len(blobs))]


def write_events_folder(folder: Path, *, num_users: int = 40, num_items: int = 60, seed: int = 0) -> Path:
    """A canonical raw events folder (events.csv.gz, meta.json, test.csv.gz) with random sessions."""
    rng = np.random.default_rng(seed)
    rows, test_rows = [], []
    for user in range(num_users):
        length = int(rng.integers(4, 12))
        items = rng.integers(0, num_items, size=length)
        behaviors = rng.choice(["click", "cart", "buy"], size=length, p=[0.7, 0.2, 0.1])
        rows += [(str(user), str(item), beh, 1000 + t) for t, (item, beh) in enumerate(zip(items, behaviors))]
        # every 4th user buys an item nobody else touches: it exists only in the held-out events
        test_item = num_items + user if user % 4 == 0 else int(rng.integers(0, num_items))
        test_rows.append((str(user), str(test_item), "buy", 1000 + length))
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["user_id", "item_id", "behavior", "timestamp"]
    pd.DataFrame(rows + test_rows, columns=columns).sort_values(["user_id", "timestamp"]).to_csv(
        folder / "events.csv.gz", index=False
    )
    pd.DataFrame(test_rows, columns=columns).to_csv(folder / "test.csv.gz", index=False)
    meta = {"stats": {"behavior_order_low_to_high": ["click", "cart", "buy"]}}
    with open(folder / "meta.json", "w") as handle:
        json.dump(meta, handle)
    return folder


@pytest.fixture
def events_folder(tmp_path: Path) -> Path:
    return write_events_folder(tmp_path / "events")


@pytest.fixture
def items_file(events_folder: Path) -> Path:
    """Categorical side info for every item of `events_folder` (gzip CSV, like ecomm_dyhatr)."""
    item_ids = pd.read_csv(events_folder / "events.csv.gz", dtype={"item_id": str})["item_id"].unique()
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "item_id": item_ids,
            "cate_id": rng.integers(0, 5, size=len(item_ids)),
            "price": rng.uniform(1, 100, size=len(item_ids)).round(2),
        }
    )
    path = events_folder.parent / "items.csv.gz"
    with gzip.open(path, "wt") as handle:
        table.to_csv(handle, index=False)
    return path
