"""Format adapters: each public log layout becomes `RawEvents` with canonical column names.

- events: any table with user_id, item_id, behavior[, timestamp][, session_id] (rename with
  `columns=`; numeric time unit detected from magnitudes, or given with `timestamp_unit=`, see
  checks.TIME_UNITS); levels from the user.
- gamer: a /work/shared/data-style folder (events.csv.gz, meta.json[, items.csv.gz]); levels from
  meta.json's behavior order, else from the folder's row in ../README.md.
- retailrocket: Kaggle RetailRocket events.csv (ms timestamps); view < cart < buy
  (addtocart -> cart, transaction -> buy).
- taobao: Tianchi UserBehavior.csv (no header); pv < fav = cart < buy.
- tmall: IJCAI-15 user_log_format1.csv (MMDD dates of `year`, day resolution); click < fav = cart < buy
  (action_type 0 click, 1 cart, 2 buy, 3 fav).
- recbole: RecBole atomic .inter (typed `name:type` header, tab-separated); levels from the user.
- gamer_json: the GAMER/MBGen JSON layout (see gamer_json.py); levels from behavior_level.json.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ConfigurationError, DataError
from ..files import read_json
from .behaviors import PRESETS, BehaviorSpec, BehaviorTable
from .events import EventLog, OnInvalid, RawEvents, validate_events
from .gamer_json import read_gamer_json
from .report import DataValidationError
from .tables import TableSource, read_header, read_table, require_columns, source_label, timestamp_numbers

__all__ = [
    "read_events",
    "detect_format",
    "FORMATS",
    "read_plain_events",
    "read_gamer_folder",
    "read_retailrocket",
    "read_taobao",
    "read_tmall",
    "read_recbole",
]

BEHAVIOR_COLUMN_NAMES = ("behavior", "behavior_type", "action_type", "item_type", "type", "event")


def _select(table: pa.Table, mapping: dict[str, str], *, file: str, optional: tuple[str, ...] = ()) -> pa.Table:
    """Rename source columns to canonical ones; optional ones are taken only when present."""
    require_columns(table, [src for dst, src in mapping.items() if dst not in optional], file=file)
    chosen = {dst: table[src] for dst, src in mapping.items() if src in table.column_names}
    return pa.table(chosen)


def _rename_values(column: pa.ChunkedArray, mapping: dict[str, str]) -> pa.Array:
    """Map raw codes to behavior names; unmapped values pass through so validation can name them."""
    values = column.combine_chunks().cast(pa.string())
    index = pc.index_in(values, value_set=pa.array(list(mapping)))
    renamed = pc.take(pa.array(list(mapping.values())), index)
    return pc.if_else(pc.is_null(index), values, renamed)


def read_plain_events(
    source: TableSource, *, columns: dict[str, str] | None = None, timestamp_unit: str = "auto",
    time_unit: str | None = None,
) -> RawEvents:
    """Any table already holding the canonical columns (or renamed with `columns`)."""
    return plain_events(read_table(source), source_label(source), columns=columns,
                        timestamp_unit=_unit_option(timestamp_unit, time_unit))


def plain_events(table: pa.Table, file: str, *, columns: dict[str, str] | None = None,
                 timestamp_unit: str = "auto") -> RawEvents:
    """`read_plain_events` of a table already read (one chunk of a large file)."""
    mapping = {name: name for name in ("user_id", "item_id", "behavior", "timestamp", "session_id")}
    unknown = sorted(set(columns or {}) - set(mapping))
    if unknown:
        raise ConfigurationError(f"columns= maps canonical names to yours; {unknown} are not canonical names "
                                 f"{list(mapping)}")
    mapping.update(columns or {})
    selected = _select(table, mapping, file=file, optional=("timestamp", "session_id"))
    return RawEvents(selected, file, "events", columns=mapping, time_unit=timestamp_unit)


def _unit_option(timestamp_unit: str, time_unit: str | None) -> str:
    """`time_unit=` is the old name of `timestamp_unit=` (the CLI flag's name); it still works, with a warning."""
    if time_unit is None:
        return timestamp_unit
    warnings.warn("time_unit= is deprecated; pass timestamp_unit= (the name of the CLI flag --timestamp_unit)",
                  FutureWarning, stacklevel=3)
    return time_unit


def read_gamer_folder(source: TableSource) -> RawEvents:
    """A folder of /work/shared/data (events.csv.gz, meta.json, optional items.csv.gz)."""
    events_file = gamer_events_file(source)
    raw = gamer_events(read_table(events_file), str(events_file))
    items_file = events_file.parent / "items.csv.gz"
    raw.items = read_table(items_file).to_pandas() if items_file.is_file() else None
    return raw


def gamer_events_file(source: TableSource) -> Path:
    path = Path(source)
    return path / "events.csv.gz" if path.is_dir() else path


def gamer_events(table: pa.Table, file: str) -> RawEvents:
    """Events of a gamer folder already read (one chunk of it); levels and time resolution from the folder."""
    folder = Path(file).parent
    table = _select(table, {n: n for n in ("user_id", "item_id", "behavior", "timestamp")}, file=file,
                    optional=("timestamp",))
    meta_file = folder / "meta.json"
    meta = _read_meta(meta_file) if meta_file.is_file() else {}
    order = meta.get("stats", {}).get("behavior_order_low_to_high") or _readme_order(folder)
    time_note = str(meta.get("timestamps", "")).upper()
    resolution = "order" if time_note.startswith("NONE") else "day" if "DAY" in time_note else "seconds"
    return RawEvents(table, file, "gamer", time_resolution=resolution,
                     time_unit="relative" if resolution == "order" else "auto",
                     behaviors=BehaviorTable.parse(order) if order else None)


def _read_meta(path: Path) -> dict[str, Any]:
    meta = read_json(path, error=DataError)
    if not isinstance(meta, dict):
        raise DataValidationError("meta.json must hold a JSON object", file=str(path))
    return meta


def _readme_order(folder: Path) -> list[str] | None:
    """Behaviors low to high from the README table row of this folder (`click 75,374 < cart ...`)."""
    readme = folder.parent / "README.md"
    if not readme.is_file():
        return None
    for line in readme.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] == folder.name:
            for cell in cells:
                if "<" in cell:
                    return [part.split()[0] for part in cell.split("<")]
    return None


def read_retailrocket(source: TableSource) -> RawEvents:
    """Kaggle RetailRocket `events.csv`: timestamp (ms), visitorid, event, itemid, transactionid."""
    return retailrocket_events(read_table(source), source_label(source))


def retailrocket_events(table: pa.Table, file: str) -> RawEvents:
    mapping = {"user_id": "visitorid", "item_id": "itemid", "behavior": "event", "timestamp": "timestamp"}
    table = _select(table, mapping, file=file)
    renamed = _rename_values(table["behavior"], {"view": "view", "addtocart": "cart", "transaction": "buy"})
    table = table.set_column(table.column_names.index("behavior"), "behavior", renamed)
    return RawEvents(table, file, "retailrocket", columns=mapping, time_unit="ms",
                     behaviors=BehaviorTable(PRESETS["retailrocket"]))


TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "behavior", "timestamp"]


def read_taobao(source: TableSource) -> RawEvents:
    """Tianchi `UserBehavior.csv` (no header): user, item, category, behavior (pv/fav/cart/buy), unix seconds."""
    # names apply to files; in-memory tables keep theirs
    return taobao_events(read_table(source, column_names=TAOBAO_COLUMNS), source_label(source))


def taobao_events(raw: pa.Table, file: str) -> RawEvents:
    if raw.num_columns == len(TAOBAO_COLUMNS) and raw.column_names != TAOBAO_COLUMNS:
        raw = raw.rename_columns(TAOBAO_COLUMNS)
    table = _select(raw, {n: n for n in ("user_id", "item_id", "behavior", "timestamp")}, file=file)
    items = _first_per_item(raw, ["category_id"])
    return RawEvents(table, file, "taobao", time_unit="s", behaviors=BehaviorTable(PRESETS["taobao"]), items=items)


def read_tmall(source: TableSource, *, year: int = 2014) -> RawEvents:
    """IJCAI-15 `user_log_format1.csv`; time_stamp is MMDD of `year`, action_type 0 click 1 cart 2 buy 3 fav."""
    return tmall_events(read_table(source), source_label(source), year=year)


def tmall_events(raw: pa.Table, file: str, *, year: int = 2014) -> RawEvents:
    mapping = {"user_id": "user_id", "item_id": "item_id", "behavior": "action_type", "timestamp": "time_stamp"}
    table = _select(raw, mapping, file=file)
    behavior = _rename_values(table["behavior"], {"0": "click", "1": "cart", "2": "buy", "3": "fav"})
    mmdd, _ = timestamp_numbers(table["timestamp"])
    dates = pd.to_datetime(
        pd.DataFrame({"year": year, "month": mmdd // 100, "day": mmdd % 100}), errors="coerce", utc=True
    )
    seconds = (dates - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy(na_value=float("nan"))
    original = table["timestamp"]
    table = table.set_column(2, "behavior", behavior).set_column(3, "timestamp", pa.array(seconds))
    items = _first_per_item(raw, [c for c in ("cat_id", "seller_id", "brand_id") if c in raw.column_names])
    return RawEvents(table, file, "tmall", columns=mapping, time_unit="s", time_resolution="day",
                     behaviors=BehaviorTable(PRESETS["tmall"]), items=items, time_text=original)


def read_recbole(source: TableSource, *, columns: dict[str, str] | None = None, timestamp_unit: str = "auto",
                 time_unit: str | None = None) -> RawEvents:
    """RecBole atomic `.inter`: tab-separated, header fields typed as `name:type` (types are dropped)."""
    file = source_label(source)
    raw = read_table(source, delimiter="\t")
    raw = raw.rename_columns([name.split(":", 1)[0] for name in raw.column_names])
    behavior_column = next((c for c in BEHAVIOR_COLUMN_NAMES if c in raw.column_names), "behavior")
    mapping = {"user_id": "user_id", "item_id": "item_id", "behavior": behavior_column, "timestamp": "timestamp",
               "session_id": "session_id"}
    mapping.update(columns or {})
    table = _select(raw, mapping, file=file, optional=("timestamp", "session_id"))
    return RawEvents(table, file, "recbole", columns=mapping, time_unit=_unit_option(timestamp_unit, time_unit))


def _first_per_item(raw: pa.Table, attributes: list[str]) -> pd.DataFrame | None:
    """Item side information of logs that repeat it on every row: the first value per item."""
    if not attributes:
        return None
    frame = raw.select(["item_id", *attributes]).to_pandas()
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.drop_duplicates("item_id").reset_index(drop=True)


FORMATS: dict[str, Callable[..., RawEvents]] = {
    "events": read_plain_events,
    "gamer": read_gamer_folder,
    "retailrocket": read_retailrocket,
    "taobao": read_taobao,
    "tmall": read_tmall,
    "recbole": read_recbole,
    "gamer_json": read_gamer_json,
}


def detect_format(source: TableSource) -> str:
    """Guess the adapter from the path, the folder contents or the header line."""
    if not isinstance(source, (str, Path)):
        return "events"
    path = Path(source)
    if path.is_dir():
        if (path / "events.csv.gz").is_file() or (path / "meta.json").is_file():
            return "gamer"
        if any(path.glob("*.inter.json")):
            return "gamer_json"
        if any(path.rglob("*.parquet")) or any(path.rglob("*.pq")):
            return "events"  # a warehouse export: shards of one table
        raise DataValidationError("folder holds neither events.csv.gz, *.inter.json nor Parquet shards",
                                  file=str(path), hint="pass the events file itself, or format= (CLI --format)")
    name = path.name
    if re.search(r"\.(S?MB)\.(inter|behavior|session|time)\.json$", name) or name.endswith(".behavior_level.json"):
        return "gamer_json"
    if name.endswith(".inter"):
        return "recbole"
    if name.startswith("events.csv") and (path.parent / "meta.json").is_file():
        return "gamer"
    if name.startswith("UserBehavior"):
        return "taobao"
    if path.suffix in {".parquet", ".pq"} and path.is_file():
        try:
            header = set(pq.read_schema(path).names)  # the footer only: the file may be huge
        except (OSError, pa.ArrowInvalid):
            header = set(read_table(path).column_names)  # raises the error naming the damaged file
    elif path.suffix in {".parquet", ".pq", ".jsonl", ".ndjson"}:
        header = set(read_table(path).column_names)
    else:
        header = set(read_header(path))
    if {"visitorid", "itemid", "event"} <= header:
        return "retailrocket"
    if {"action_type", "time_stamp", "seller_id"} <= header:
        return "tmall"
    return "events"


def read_events(
    source: TableSource,
    format: str = "auto",
    behaviors: BehaviorSpec | None = None,
    *,
    on_invalid: OnInvalid = "raise",
    on_duplicate: str | None = None,
    **options: Any,
) -> EventLog:
    """Read a log into the canonical, validated events table.

    `format` is one of FORMATS or "auto"; `behaviors` overrides the format's preset levels;
    `options` go to the adapter (`columns={"user_id": "visitor"}`, `timestamp_unit="ms"`, `year=2014`).
    """
    name = detect_format(source) if format == "auto" else format
    if name not in FORMATS:
        raise ConfigurationError(f"unknown format {format!r}; choose one of {sorted(FORMATS)} or 'auto'")
    try:
        raw = FORMATS[name](source, **options)
    except TypeError as error:
        if "unexpected keyword" in str(error):
            raise ConfigurationError(f"format {name!r} does not take option(s) {sorted(options)}: {error}") from None
        raise
    return validate_events(raw, behaviors, on_invalid=on_invalid, on_duplicate=on_duplicate)

