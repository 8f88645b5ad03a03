"""Reader for the JSON layout of the GAMER / MBGen reference code.

A dataset `NAME` is a set of files sharing the prefix `NAME.` in one folder:

- `NAME.SMB.inter.json` (session-wise) or `NAME.MB.inter.json`: {user_id: [item_id, ...]} in time order;
- `NAME.SMB.behavior.json` / `NAME.MB.behavior.json`: {user_id: [behavior, ...]}, parallel to the items;
- `NAME.SMB.session.json` (SMB only, optional): {user_id: [session_id, ...]}, parallel; the reference
  code treats larger session ids as later sessions;
- `NAME.SMB.time.json` / `NAME.MB.time.json` (optional): {user_id: ["%Y-%m-%d %H:%M:%S" | number, ...]};
- `NAME.behavior_level.json`: {behavior: level}; its key order is the identity order;
- `NAME.index.json` (optional): {item_id: [code token, ...]}, the dataset's own semantic IDs.

Assumptions: without a time file the list order is the time order (so timestamps are positions);
integer item and session ids are read as their decimal strings; when both variants exist SMB is
used unless `variant="MB"`. Rows in error messages count events user by user in the file's order.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from .behaviors import BehaviorTable
from .events import RawEvents
from .report import DataValidationError

__all__ = ["read_gamer_json", "gamer_json_files"]

_SUFFIX = re.compile(r"\.(S?MB\.(inter|behavior|session|time)|behavior_level|index)\.json$")


def gamer_json_files(source: str | Path, variant: Literal["SMB", "MB"] | None = None) -> dict[str, Path]:
    """Locate the files of one dataset from its folder, its prefix or any one of its files."""
    path = Path(source)
    if path.is_dir():
        prefixes = sorted({_SUFFIX.sub("", p.name) for p in path.glob("*.inter.json")})
        if len(prefixes) != 1:
            raise ValueError(f"{path}: expected one dataset prefix with *.inter.json files, found {prefixes or 'none'}")
        folder, prefix = path, prefixes[0]
    else:
        folder, prefix = path.parent, _SUFFIX.sub("", path.name)
    if variant is None:
        variant = "SMB" if (folder / f"{prefix}.SMB.inter.json").is_file() else "MB"
    files = {
        "inter": folder / f"{prefix}.{variant}.inter.json",
        "behavior": folder / f"{prefix}.{variant}.behavior.json",
        "session": folder / f"{prefix}.{variant}.session.json",
        "time": folder / f"{prefix}.{variant}.time.json",
        "behavior_level": folder / f"{prefix}.behavior_level.json",
        "index": folder / f"{prefix}.index.json",
    }
    for required in ("inter", "behavior"):
        if not files[required].is_file():
            raise FileNotFoundError(f"GAMER JSON layout: missing {files[required]}")
    return {key: file for key, file in files.items() if file.is_file()}


def _load(file: Path) -> Any:
    with file.open(encoding="utf-8") as handle:
        return json.load(handle)


def _parallel(name: str, file: Path, values: dict[str, list[Any]], lengths: dict[str, int]) -> list[Any]:
    """Flatten a per-user list file after checking it matches the items file user by user."""
    missing = [user for user in lengths if user not in values]
    if missing:
        raise DataValidationError(f"user missing from the {name} file", file=str(file), column=name, row=None,
                                  hint=f"user {missing[0]!r} has items but no {name} list ({len(missing)} users)")
    for user, length in lengths.items():
        if len(values[user]) != length:
            raise DataValidationError(
                f"{name} list length {len(values[user])} differs from the {length} items of user {user!r}",
                file=str(file), column=name,
            )
    return list(chain.from_iterable(values[user] for user in lengths))


def read_gamer_json(
    source: str | Path, *, variant: Literal["SMB", "MB"] | None = None
) -> RawEvents:
    """Per-user item lists with parallel behavior (and session/time) lists -> canonical raw events."""
    files = gamer_json_files(source, variant)
    inters: dict[str, list[Any]] = _load(files["inter"])
    lengths = {str(user): len(items) for user, items in inters.items()}
    inters = {str(user): items for user, items in inters.items()}
    columns: dict[str, Any] = {
        "user_id": list(chain.from_iterable([user] * n for user, n in lengths.items())),
        "item_id": [str(item) for item in chain.from_iterable(inters.values())],
    }
    for key, column in (("behavior", "behavior"), ("session", "session_id"), ("time", "timestamp")):
        if key in files:
            columns[column] = [str(v) for v in _parallel(key, files[key], _keyed(_load(files[key])), lengths)]
    behaviors = BehaviorTable.parse(_load(files["behavior_level"])) if "behavior_level" in files else None
    item_index = None
    if "index" in files:
        item_index = {str(item): tuple(str(code) for code in codes) for item, codes in _load(files["index"]).items()}
    return RawEvents(
        pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()}),
        str(files["behavior"]),
        "gamer_json",
        behaviors=behaviors,
        item_index=item_index,
    )


def _keyed(values: dict[Any, list[Any]]) -> dict[str, list[Any]]:
    return {str(user): items for user, items in values.items()}
