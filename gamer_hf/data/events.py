"""The canonical events table and the validation that produces it.

Canonical table (a `datasets.Dataset`, Arrow-backed), sorted by user (in order of first
appearance in the source), then time, then source order:

    user_id: string, item_id: string, behavior: string, timestamp: float64[, session_id: string]

`timestamp` is in seconds (UTC) unless `time_resolution == "order"`, where it is the event's
position in its user's sequence. Numeric source times are read in the unit the file's magnitudes
show (checks.TimestampProfile) unless one is given; times impossible in that unit (before 1990,
after now + 1 day, another unit than the rest of the file) are refused. Ids and behaviors lose
surrounding whitespace (counted); ids longer than checks.MAX_ID_LENGTH are refused. Every
rejected row is either an error (`on_invalid="raise"`) or a counted `DropReport` entry naming
file, column, row and value (`on_invalid="drop"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigurationError
from .behaviors import BehaviorSpec, BehaviorTable
from .checks import (
    DATETIME,
    MAX_ID_LENGTH,
    TimestampProfile,
    overlong_ids,
    shorten,
    strip_ids,
    timestamp_problems,
    to_seconds,
)
from .report import DataValidationError, DropReport
from .tables import id_strings, timestamp_numbers

__all__ = ["RawEvents", "EventLog", "validate_events", "OnInvalid", "CheckedRows", "check_rows", "decide_time_unit"]

OnInvalid = Literal["raise", "drop"]
TimeResolution = Literal["seconds", "day", "order"]


@dataclass
class RawEvents:
    """What a format adapter hands over: canonical column names with raw values, before validation.

    `columns` maps canonical names to the source's own names so that errors quote the user's file;
    `time_unit` is "auto" (detect from magnitudes) or one of checks.TIME_UNITS;
    `time_text` holds the source's timestamp values when the adapter already converted them to seconds.
    Rows in messages are 0-based positions in `table` (data rows of a file, header excluded).
    """

    table: pa.Table
    file: str
    format: str
    columns: dict[str, str] = field(default_factory=dict)
    time_unit: str = "auto"
    time_resolution: TimeResolution = "seconds"
    behaviors: BehaviorTable | None = None
    items: pd.DataFrame | None = None
    item_index: dict[str, tuple[str, ...]] | None = None
    time_text: pa.ChunkedArray | pa.Array | None = None

    def source_column(self, name: str) -> str:
        return self.columns.get(name, name)


@dataclass
class EventLog:
    """Validated events plus everything later steps need to interpret them.

    `time_unit` is how source times were read (a checks.TIME_UNITS name, "datetime", or None
    without a time column); `time_unit_detected` says whether it came from the magnitudes.
    """

    events: datasets.Dataset
    behaviors: BehaviorTable
    source: str
    format: str
    time_resolution: TimeResolution
    report: DropReport
    items: pd.DataFrame | None = None
    item_index: dict[str, tuple[str, ...]] | None = None
    time_unit: str | None = None
    time_unit_detected: bool = False

    @property
    def has_sessions(self) -> bool:
        return "session_id" in self.events.column_names


class _Checker:
    """Applies one rule at a time: raise on the first offending row, or record and mark drops."""

    def __init__(self, raw: RawEvents, on_invalid: OnInvalid, report: DropReport, row_offset: int = 0) -> None:
        if on_invalid not in ("raise", "drop"):
            raise ConfigurationError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
        self.raw, self.on_invalid, self.report, self.row_offset = raw, on_invalid, report, row_offset
        self.dropped = np.zeros(raw.table.num_rows, dtype=bool)
        # the rule (its place in the fixed order of checks) of every record this checker added: chunks of
        # one file merge their records back into that order (DropReport.merge_repeats)
        self.rule, self.record_rules = 0, []

    def check(self, bad: np.ndarray, reason: str, column: str | None, values: Any, policy: str | None = None,
              hint: str = "pass on_invalid='drop' (CLI --on_invalid drop) to drop such rows and report them") -> None:
        self.rule += 1
        bad = bad & ~self.dropped
        count = int(bad.sum())
        if not count:
            return
        where = np.flatnonzero(bad)
        label = self.raw.source_column(column) if column else None
        quoted = [_value_at(values, i) for i in where[:5]]
        if (policy or self.on_invalid) == "raise":
            raise DataValidationError(reason, file=self.raw.file, column=label, row=int(where[0]) + self.row_offset,
                                      value=quoted[0], count=count, hint=hint)
        self.report.add(reason, file=self.raw.file, column=label, rows=list(where[:5] + self.row_offset),
                        values=quoted, count=count)
        self.record_rules.append(self.rule)
        self.dropped |= bad

    def clean_ids(self, values: pa.Array, column: str, cap: bool = True) -> pa.Array:
        """Strip surrounding whitespace (counted in the report), then refuse ids over MAX_ID_LENGTH."""
        self.rule += 1
        stripped, changed = strip_ids(values)
        changed &= ~self.dropped
        if changed.any():
            where = np.flatnonzero(changed)
            self.report.add("surrounding whitespace", file=self.raw.file, column=self.raw.source_column(column),
                            rows=list(where[:5] + self.row_offset), values=[values[int(i)].as_py() for i in where[:5]],
                            count=int(changed.sum()), action="stripped")
            self.record_rules.append(self.rule)
        if cap:
            overlong = overlong_ids(stripped)  # quoted shortened, made only when there is one (it costs a pass)
            self.check(overlong, f"id longer than {MAX_ID_LENGTH} characters", column,
                       shorten(stripped) if overlong.any() else stripped,
                       hint="check the file's quoting (an open quote swallows the lines after "
                       "it), or pass on_invalid='drop' (CLI --on_invalid drop) to drop such rows")
        return stripped


def _value_at(values: Any, index: int) -> Any:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values[int(index)].as_py()
    return values[int(index)]


def _as_bool(array: pa.Array) -> np.ndarray:
    return pc.fill_null(array, True).to_numpy(zero_copy_only=False)


def behavior_table(raw: RawEvents, behaviors: BehaviorSpec | None) -> BehaviorTable:
    """The levels a log is read with: `behaviors` when given, else the adapter's preset."""
    table = BehaviorTable.parse(behaviors) if behaviors is not None else raw.behaviors
    if table is None:
        raise ConfigurationError(
            f"{raw.file}: the {raw.format!r} format has no behavior preset; pass behaviors, e.g. "
            "'click:0,cart:1,buy:2' (CLI --behaviors)"
        )
    return table


def duplicate_policy(on_invalid: OnInvalid, on_duplicate: str | None) -> str:
    """What identical rows get: `on_duplicate`, defaulting to `on_invalid`."""
    if on_duplicate not in (None, "raise", "drop", "keep"):
        raise ConfigurationError(f"on_duplicate must be 'raise', 'drop' or 'keep', got {on_duplicate!r}")
    return on_duplicate or on_invalid


DUPLICATE_REASON = "duplicate row (same user, item, behavior and timestamp)"
DUPLICATE_HINT = ("pass on_duplicate='drop' or 'keep' (CLI --on_duplicate) to drop them (reported) or keep them as "
                  "repeated events")


def describe_duplicate(user: str, item: str, behavior: str, timestamp: float) -> str:
    """How a duplicate row is quoted in messages and the drop report."""
    return f"user_id={user}, item_id={item}, behavior={behavior}, timestamp={timestamp:.15g}"


@dataclass
class CheckedRows:
    """The rows of one table (or chunk) that passed every per-row rule, with their cleaned values."""

    keep: np.ndarray  # positions in the table
    users: pa.Array
    items: pa.Array
    behaviors: pa.Array
    sessions: pa.Array | None
    seconds: np.ndarray | None  # None without a time column


def check_rows(raw: RawEvents, table: BehaviorTable, checker: "_Checker",
               time_unit: tuple[str, bool] | None = None) -> CheckedRows:
    """Apply the per-row rules (ids, behaviors, timestamps) to one table or chunk, in their fixed order.

    `time_unit` is the file's (unit, detected) when a reader decided it over every chunk
    (`decide_time_unit` on merged profiles); without it the table's own magnitudes decide.
    """
    source = raw.table
    users = id_strings(source["user_id"], file=raw.file, name=raw.source_column("user_id"))
    items = id_strings(source["item_id"], file=raw.file, name=raw.source_column("item_id"))
    for name, values in (("user_id", users), ("item_id", items)):
        empty = pc.equal(pc.utf8_trim_whitespace(values), "")
        checker.check(_as_bool(pc.or_kleene(pc.is_null(values), empty)), f"null or empty {name}", name, values)
    behavior_values = id_strings(source["behavior"], file=raw.file, name=raw.source_column("behavior"))
    sessions = None
    if "session_id" in source.column_names:
        sessions = id_strings(source["session_id"], file=raw.file, name=raw.source_column("session_id"))
        checker.check(_as_bool(pc.is_null(sessions)), "null session id", "session_id", sessions)
    users, items = checker.clean_ids(users, "user_id"), checker.clean_ids(items, "item_id")
    behavior_values = checker.clean_ids(behavior_values, "behavior", cap=False)
    sessions = checker.clean_ids(sessions, "session_id") if sessions is not None else None
    known = pc.fill_null(pc.is_in(behavior_values, value_set=pa.array(table.names)), False).to_numpy(
        zero_copy_only=False
    )
    checker.check(~known, f"behavior not in the level table {table.levels}", "behavior", behavior_values)
    seconds = _read_times(raw, checker, time_unit) if "timestamp" in source.column_names else None
    keep = np.flatnonzero(~checker.dropped)
    take = pa.array(keep)
    return CheckedRows(keep, users.take(take), items.take(take), behavior_values.take(take),
                       sessions.take(take) if sessions is not None else None,
                       seconds[keep] if seconds is not None else None)


def decide_time_unit(requested: str, is_datetime: bool, profile: TimestampProfile) -> tuple[str, bool]:
    """The unit a file's times are read in, and whether its magnitudes (`profile`, of the whole file) chose it."""
    detected = requested == "auto" and not is_datetime
    return (DATETIME if is_datetime else profile.detect() if detected else requested), detected


def validate_events(
    raw: RawEvents,
    behaviors: BehaviorSpec | None = None,
    *,
    on_invalid: OnInvalid = "raise",
    on_duplicate: Literal["raise", "drop", "keep"] | None = None,
) -> EventLog:
    """Check ids, behaviors, timestamps and duplicates, then sort into the canonical table.

    `behaviors` overrides the adapter's preset. `on_duplicate` defaults to `on_invalid`; "keep"
    accepts identical rows (e.g. repeated clicks in day-resolution logs) as repeated events.
    """
    table = behavior_table(raw, behaviors)
    policy = duplicate_policy(on_invalid, on_duplicate)
    report = DropReport()
    checker = _Checker(raw, on_invalid, report)
    source = raw.table
    has_time = "timestamp" in source.column_names
    time_unit, detected = None, False
    if has_time:
        numbers, is_datetime = timestamp_numbers(source["timestamp"])
        time_unit, detected = decide_time_unit(raw.time_unit, is_datetime, TimestampProfile.of(numbers))
    rows = check_rows(raw, table, checker, (time_unit, detected) if has_time else None)
    keep, users, items, behavior_values, sessions = rows.keep, rows.users, rows.items, rows.behaviors, rows.sessions
    user_codes = _codes(users)
    time = rows.seconds if has_time else np.arange(len(keep), dtype=np.float64)
    if has_time and policy != "keep":
        duplicate = _duplicates(user_codes, _codes(items), _codes(behavior_values), time,
                                _codes(sessions) if sessions is not None else None)
        full = np.zeros(source.num_rows, dtype=bool)
        full[keep[duplicate]] = True
        described = _DuplicateValues(users, items, behavior_values, time, keep)
        checker.check(full, DUPLICATE_REASON, None, described, policy=policy, hint=DUPLICATE_HINT)
        if duplicate.any():
            keep, survivors = keep[~duplicate], pa.array(np.flatnonzero(~duplicate))
            users, items = users.take(survivors), items.take(survivors)
            behavior_values = behavior_values.take(survivors)
            sessions = sessions.take(survivors) if sessions is not None else None
            user_codes, time = user_codes[~duplicate], time[~duplicate]

    order = pa.array(np.lexsort((time, user_codes)) if has_time else np.argsort(user_codes, kind="stable"))
    if not has_time:  # event order defines time: position within the user's sequence
        sorted_users = user_codes[order.to_numpy()]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
        time = np.arange(len(sorted_users)) - np.repeat(starts, np.diff(np.r_[starts, len(sorted_users)]))
        time = time.astype(np.float64)
    else:
        time = time[order.to_numpy()]
    columns = {
        "user_id": users.take(order),
        "item_id": items.take(order),
        "behavior": behavior_values.take(order),
        "timestamp": pa.array(time, pa.float64()),
    }
    if sessions is not None:
        columns["session_id"] = sessions.take(order)
    resolution: TimeResolution = raw.time_resolution if has_time else "order"
    return EventLog(
        events=datasets.Dataset(pa.table(columns)),
        behaviors=table,
        source=raw.file,
        format=raw.format,
        time_resolution=resolution,
        report=report,
        items=raw.items,
        item_index=raw.item_index,
        time_unit=time_unit,
        time_unit_detected=detected,
    )


def _read_times(raw: RawEvents, checker: "_Checker", time_unit: tuple[str, bool]) -> np.ndarray:
    """Seconds of every row read in the file's unit; refuses unparsable and impossible times."""
    numbers, is_datetime = timestamp_numbers(raw.table["timestamp"])
    unit, detected = time_unit
    if is_datetime != (unit == DATETIME):
        raise DataValidationError(
            "timestamps mix date-times and numbers", file=raw.file, column=raw.source_column("timestamp"),
            row=checker.row_offset, value=_value_at(raw.table["timestamp"], 0),
            hint="write every timestamp the same way (all numbers or all date-times)")
    seconds = to_seconds(numbers, unit)
    quoted = raw.time_text if raw.time_text is not None else raw.table["timestamp"]
    checker.check(~np.isfinite(seconds), "null or unparsable timestamp", "timestamp", quoted)
    hint = ("pass timestamp_unit= (CLI --timestamp_unit) to read them in another unit, e.g. relative for offsets "
            "from any origin, or on_invalid='drop' (CLI --on_invalid drop) to drop such rows")
    for reason, bad in timestamp_problems(numbers, unit, detected=detected):
        checker.check(bad, reason, "timestamp", quoted, hint=hint)
    return seconds


class _DuplicateValues:
    """Lazily renders the offending row of a duplicate as its (user, item, behavior, timestamp)."""

    def __init__(self, users: pa.Array, items: pa.Array, behaviors: pa.Array, time: np.ndarray, keep: np.ndarray):
        self.users, self.items, self.behaviors, self.time, self.keep = users, items, behaviors, time, keep

    def __getitem__(self, row: int) -> str:
        i = int(np.searchsorted(self.keep, row))
        return describe_duplicate(self.users[i].as_py(), self.items[i].as_py(), self.behaviors[i].as_py(),
                                  self.time[i])


def _codes(values: pa.Array) -> np.ndarray:
    """Integer codes in order of first appearance."""
    return pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _duplicates(users: np.ndarray, items: np.ndarray, behaviors: np.ndarray, time: np.ndarray,
                sessions: np.ndarray | None) -> np.ndarray:
    """True for every repeat (after the first, in source order) of an identical event."""
    keys = [time, behaviors, items, users] if sessions is None else [sessions, time, behaviors, items, users]
    order = np.lexsort(keys)
    same = np.ones(len(order) - 1, dtype=bool) if len(order) > 1 else np.zeros(0, dtype=bool)
    for key in keys:
        ordered = key[order]
        same &= ordered[1:] == ordered[:-1]
    duplicate = np.zeros(len(order), dtype=bool)
    duplicate[order[1:][same]] = True
    return duplicate
