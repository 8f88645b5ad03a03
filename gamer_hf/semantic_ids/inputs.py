"""What the semantic-ID step reads from disk: the catalogue, training sequences, behaviors, side info.

Two sources:
- a raw events folder in the canonical layout (events.csv.gz, meta.json, optional items.csv.gz and
  test.csv.gz). Events listed in test.csv.gz are held out of the co-occurrence; other future
  held-out events cannot be known here, so prefer a prepared dataset for leak-free codes;
- a prepared dataset (`gamer_hf.data.load_prepared`): only the train split feeds the
  co-occurrence, one row per user (the original view: augmented views would repeat its pairs and
  invent adjacencies), i.e. each user's last max_history + 1 training interactions. Items seen
  only in validation/test still get codes, from side info when there is some, else the seeded
  random fallback of `fallback.py`.
The catalogue is every item that occurs in the events (all splits; `items.json` of a prepared
dataset); items that appear only in an items table are not part of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from ..files import read_json
from .collaborative import sequences_from_events

__all__ = ["SemanticIdInputs", "load_inputs", "read_items_table"]

ITEM_COLUMN = "item_id"


@dataclass
class SemanticIdInputs:
    """Everything needed to embed, quantize and write a tokenizer for one dataset."""

    item_ids: list[str]  # catalogue, sorted
    sequences: list[list[str]]  # training interactions only, one time-ordered list per user/row
    behaviors: dict[str, int]  # name -> level, identity order
    items: pd.DataFrame | None  # side information (item_id as str), or None
    source: str  # "raw" or "prepared"
    # the behavior of every position of `sequences`, flattened, as an index into `behaviors` (in its order): what
    # the profiles of lone items read (`profiles.py`); None when unknown
    position_behaviors: np.ndarray | None = None


def _with_string_ids(table: pd.DataFrame, source: str) -> pd.DataFrame:
    if ITEM_COLUMN not in table.columns:
        raise ValueError(f"items table {source} lacks column {ITEM_COLUMN!r}; it has {list(table.columns)}")
    return table.assign(**{ITEM_COLUMN: table[ITEM_COLUMN].astype(str)})


def read_items_table(path: Path) -> pd.DataFrame:
    """Items side-information table (CSV/Parquet), ids read as strings."""
    if not path.is_file():
        raise FileNotFoundError(f"items file not found: {path}")
    if path.suffix in {".parquet", ".pq"}:
        return _with_string_ids(pd.read_parquet(path), str(path))
    return _with_string_ids(pd.read_csv(path, dtype={ITEM_COLUMN: str}), str(path))


def _behavior_levels(meta: Mapping[str, Any], meta_file: Path, names: list[str]) -> dict[str, int]:
    order = meta.get("behavior_order_low_to_high") or meta.get("stats", {}).get("behavior_order_low_to_high")
    if not order:
        raise ValueError(
            f"{meta_file} gives no behavior order (stats.behavior_order_low_to_high); the events use "
            f"{sorted(names)}: pass behaviors, e.g. --behaviors 'click<cart<buy'"
        )
    unknown = sorted(set(names) - set(order))
    if unknown:
        raise ValueError(f"events use behavior(s) {unknown} missing from the order {order} in {meta_file}")
    return {name: level for level, name in enumerate(order)}


def _load_raw(folder: Path, behaviors: Mapping[str, int] | None) -> SemanticIdInputs:
    events_file = folder / "events.csv.gz"
    columns = {"user_id": str, "item_id": str, "behavior": str}
    events = pd.read_csv(events_file, dtype=columns)
    missing = sorted({"user_id", "item_id", "behavior"} - set(events.columns))
    if missing:
        raise ValueError(f"{events_file} lacks column(s) {missing}; it has {list(events.columns)}")
    test_file = folder / "test.csv.gz"
    train = events
    if test_file.is_file():
        keys = [column for column in ("user_id", "item_id", "behavior", "timestamp") if column in events.columns]
        held_out = pd.read_csv(test_file, dtype=columns)[keys].drop_duplicates()
        train = events.merge(held_out, on=keys, how="left", indicator=True).query("_merge == 'left_only'")
    if behaviors is None:
        meta_file = folder / "meta.json"
        meta = read_json(meta_file, {}, error=DataError)
        behaviors = _behavior_levels(meta, meta_file, events["behavior"].unique().tolist())
    items_file = folder / "items.csv.gz"
    return SemanticIdInputs(
        item_ids=sorted(events["item_id"].unique().tolist()),
        sequences=sequences_from_events(train),
        behaviors=dict(behaviors),
        items=read_items_table(items_file) if items_file.is_file() else None,
        source="raw",
        position_behaviors=_behavior_codes(pa.array(
            [b for seq in sequences_from_events(train, "behavior") for b in seq], type=pa.string()), behaviors),
    )


def _first_views(train: Any) -> tuple[Any, np.ndarray]:
    """The train split as Arrow and the rows of each user's first view (rows are ordered by user, original first)."""
    table = train.with_format("arrow")[:]
    return table, np.flatnonzero(~table.column("user_id").to_pandas().duplicated().to_numpy())


def _behavior_codes(values: pa.Array, behaviors: Mapping[str, int]) -> np.ndarray:
    """Each behavior name of `values` as its index in `behaviors` (int8; -1 for a name outside them)."""
    codes = pc.index_in(values, value_set=pa.array(list(behaviors), type=pa.string()))
    return codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int8)


def _first_view_behaviors(train: Any, behaviors: Mapping[str, int]) -> np.ndarray:
    """The behavior codes of each user's first row, flattened, aligned with `_first_view_sequences`."""
    table, keep = _first_views(train)
    lists = table.column("behaviors").take(pa.array(keep)).combine_chunks()
    return _behavior_codes(lists.flatten().cast(pa.string()), behaviors)


def _first_view_sequences(train: Any, catalogue: list[str]) -> list[list[str]]:
    """Each user's first row's items (rows are ordered by user, original view first), read from Arrow.

    The ids become references to the catalogue's own str objects (8 bytes per position), not one new
    str per position: tens of millions of training positions at Taobao scale.
    """
    table, keep = _first_views(train)
    lists = table.column("items").take(pa.array(keep)).combine_chunks()
    values = lists.flatten().cast(pa.string())
    names = np.asarray(catalogue, dtype=object)
    rows = pc.index_in(values, value_set=pa.array(catalogue, type=pa.string()))
    flat = names[rows.fill_null(0).to_numpy(zero_copy_only=False)]
    missing = np.flatnonzero(rows.is_null().to_numpy(zero_copy_only=False))
    flat[missing] = values.take(pa.array(missing)).to_pylist()  # not in the catalogue: its own str
    offsets = lists.offsets.to_numpy()
    return [part.tolist() for part in np.split(flat, offsets[1:-1] - offsets[0])] if len(keep) else []


def _load_prepared(folder: Path, behaviors: Mapping[str, int] | None) -> SemanticIdInputs:
    from gamer_hf.data import load_prepared

    data = load_prepared(folder)
    item_ids = sorted(str(item) for item in data.item_ids)
    items_table = None if data.items is None else _with_string_ids(data.items, str(folder / "items.parquet"))
    levels = dict(behaviors) if behaviors is not None else dict(data.metadata["behaviors"])
    return SemanticIdInputs(
        item_ids=item_ids,
        sequences=_first_view_sequences(data.splits["train"], item_ids),
        behaviors=levels,
        items=items_table,
        source="prepared",
        position_behaviors=_first_view_behaviors(data.splits["train"], levels),
    )


def load_inputs(
    data: str | Path, *, items_file: str | Path | None = None, behaviors: Mapping[str, int] | None = None
) -> SemanticIdInputs:
    """Read a raw events folder (has events.csv.gz) or a prepared dataset; `items_file` overrides side info."""
    folder = Path(data)
    if folder.is_file():  # an events file, as `prepare --events` takes: this job reads folders
        raise NotADirectoryError(f"{folder} is a file: pass a prepared dataset folder (`gamer-hf prepare --out`) or "
                                 "a raw events folder (events.csv.gz, meta.json)")
    if not folder.is_dir():
        raise FileNotFoundError(f"data directory not found: {folder}")
    if (folder / "metadata.json").is_file():
        inputs = _load_prepared(folder, behaviors)
    elif (folder / "events.csv.gz").is_file():
        inputs = _load_raw(folder, behaviors)
    else:
        raise ValueError(
            f"{folder} is neither a prepared dataset (metadata.json) nor a raw events folder (events.csv.gz)"
        )
    if items_file is not None:
        inputs.items = read_items_table(Path(items_file))
    return inputs
