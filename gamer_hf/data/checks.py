"""Vectorized checks of one chunk of events: id cleaning and timestamp units and ranges.

Every function takes one column of a chunk (an Arrow array or a pandas Series) and returns numpy
masks or a summary that combines across chunks (`TimestampProfile.merge`), so that a reader
holding the whole log and one streaming it in chunks reach the same decisions. The only per-file
decision is the timestamp unit: profile every chunk, merge, `detect()`, then run
`timestamp_problems` on each chunk with that unit and the same `now`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigurationError

__all__ = [
    "EPOCH_START",
    "MAX_ID_LENGTH",
    "TIME_UNITS",
    "TimestampProfile",
    "epoch_end",
    "overlong_ids",
    "shorten",
    "strip_ids",
    "timestamp_problems",
    "to_seconds",
    "unit_label",
]

Column = Union[pa.Array, pa.ChunkedArray, pd.Series, np.ndarray]

# Ids longer than this are refused: real ids are short keys, a long one is a parsing accident
# (a lost quote swallowing the rest of a file) and would bloat every vocabulary and JSON map.
MAX_ID_LENGTH = 512
EPOCH_START = 631_152_000.0  # 1990-01-01T00:00:00Z: the earliest plausible time of an interaction log
DETECTABLE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}  # epoch units told apart by magnitude
_SECONDS_PER = {"min": 60.0, "h": 3600.0, "day": 86400.0}
RELATIVE = "relative"  # seconds (or relative_<unit>) from an arbitrary origin: counters, offsets
TIME_UNITS = ("auto", *DETECTABLE, *_SECONDS_PER, RELATIVE, *(f"{RELATIVE}_{u}" for u in (*DETECTABLE, *_SECONDS_PER)))
DATETIME = "datetime"  # date-time text or typed timestamps, already in seconds

# Categories of a raw number: 0 a small non-negative offset, 1-4 an epoch time in s/ms/us/ns,
# 5 impossible in every unit (negative, between the bands, beyond now + 1 day in ns), -1 missing.
_OFFSET, _IMPOSSIBLE, _MISSING = 0, len(DETECTABLE) + 1, -1
_CATEGORY_UNITS = (RELATIVE, *DETECTABLE)
_LABELS = {"s": "unix seconds", "ms": "unix milliseconds", "us": "unix microseconds", "ns": "unix nanoseconds",
           "min": "unix minutes", "h": "unix hours", "day": "unix days", RELATIVE: "relative seconds",
           DATETIME: "date-times"}


def _strings(values: Column) -> pa.Array:
    if isinstance(values, pd.Series):
        return pa.array(values.astype("string"), pa.string(), from_pandas=True)
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def strip_ids(values: Column) -> tuple[pa.Array, np.ndarray]:
    """Ids without surrounding whitespace (`" 1 "` is item `"1"`), and where that changed a value."""
    strings = _strings(values)
    stripped = pc.utf8_trim_whitespace(strings)
    changed = pc.fill_null(pc.not_equal(stripped, strings), False).to_numpy(zero_copy_only=False)
    return stripped, changed


def overlong_ids(values: Column, max_length: int = MAX_ID_LENGTH) -> np.ndarray:
    """True where an id has more than `max_length` characters."""
    lengths = pc.fill_null(pc.utf8_length(_strings(values)), 0)
    return pc.greater(lengths, max_length).to_numpy(zero_copy_only=False)


def shorten(values: Column, keep: int = 40) -> pa.Array:
    """Values as messages quote them: long ones cut to `keep` characters plus their full length."""
    strings = _strings(values)
    lengths = pc.fill_null(pc.utf8_length(strings), 0)
    head = pc.utf8_slice_codeunits(strings, 0, keep)
    tail = pc.binary_join_element_wise("... (", pc.cast(lengths, pa.string()), " characters)", "")
    return pc.if_else(pc.greater(lengths, keep), pc.binary_join_element_wise(head, tail, ""), strings)


def epoch_end(now: float | None = None) -> float:
    """The latest plausible event time: one day past `now` (clock skew, time zones), in seconds."""
    return (time.time() if now is None else now) + 86_400.0


def _parse_unit(unit: str) -> tuple[str, bool]:
    """(scale unit, whether values count from the unix epoch) of a TIME_UNITS name."""
    if unit not in TIME_UNITS or unit == "auto":
        raise ConfigurationError(f"unknown timestamp unit {unit!r}; choose one of {list(TIME_UNITS)}")
    if unit == RELATIVE:
        return "s", False
    if unit.startswith(f"{RELATIVE}_"):
        return unit[len(RELATIVE) + 1:], False
    return unit, True


def unit_label(unit: str) -> str:
    """How the summary and messages name a unit: 'unix milliseconds', 'relative minutes', ..."""
    if unit in _LABELS:
        return _LABELS[unit]
    scale, _ = _parse_unit(unit)
    return _LABELS[scale].replace("unix", RELATIVE)


def to_seconds(values: np.ndarray, unit: str) -> np.ndarray:
    """Raw numbers in `unit` (TIME_UNITS, or DATETIME for values already in seconds) as float seconds."""
    values = np.asarray(values, dtype=np.float64)
    if unit == DATETIME:
        return values
    scale, _ = _parse_unit(unit)
    if scale in DETECTABLE:
        return values / DETECTABLE[scale] if scale != "s" else values
    return values * _SECONDS_PER[scale]


def _categories(values: np.ndarray, now: float | None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    codes = np.full(len(values), _IMPOSSIBLE, dtype=np.int8)
    codes[(values >= 0) & (values < EPOCH_START)] = _OFFSET
    end = epoch_end(now)
    for code, scale in enumerate(DETECTABLE.values(), start=1):
        codes[(values >= EPOCH_START * scale) & (values <= end * scale)] = code
    codes[np.isnan(values)] = _MISSING
    return codes


@dataclass(frozen=True)
class TimestampProfile:
    """How many numbers of a file look like offsets, epoch s/ms/us/ns, or nothing possible.

    Built per chunk (`of`) and combined (`merge`); `detect` names the file's unit: the epoch unit
    most values fit, or relative seconds when small offsets are the majority.
    """

    counts: tuple[int, ...]

    @classmethod
    def of(cls, values: np.ndarray | pd.Series, *, now: float | None = None) -> "TimestampProfile":
        codes = _categories(np.asarray(values, dtype=np.float64), now)
        return cls(tuple(int(n) for n in np.bincount(codes[codes >= 0], minlength=_IMPOSSIBLE + 1)))

    def merge(self, other: "TimestampProfile") -> "TimestampProfile":
        return TimestampProfile(tuple(a + b for a, b in zip(self.counts, other.counts)))

    def detect(self) -> str:
        epoch = self.counts[1:_IMPOSSIBLE]
        if max(epoch) and max(epoch) >= self.counts[_OFFSET]:
            return list(DETECTABLE)[int(np.argmax(epoch))]
        return RELATIVE if self.counts[_OFFSET] else "s"


def timestamp_problems(values: np.ndarray | pd.Series, unit: str, *, detected: bool = False,
                       now: float | None = None) -> list[tuple[str, np.ndarray]]:
    """Rows a file read in `unit` must refuse, as (reason, mask) pairs: mixed units, then impossible times.

    Epoch units and date-times must lie between 1990-01-01 and now + 1 day. Relative seconds are
    checked only when `detected` (numbers that fit an epoch unit, negative or huge ones are then
    mistakes); a relative unit the user gave accepts any finite number. Non-finite numbers are the
    caller's "unparsable" rows.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if unit == DATETIME:
        outside = finite & ((values < EPOCH_START) | (values > epoch_end(now)))
        return [("date-time before 1990-01-01 or after now + 1 day", outside)]
    scale, epoch = _parse_unit(unit)
    if not epoch and not (detected and unit == RELATIVE):
        return []
    codes = _categories(values, now)
    problems: list[tuple[str, np.ndarray]] = []
    if scale in DETECTABLE:
        expected = _CATEGORY_UNITS.index(scale if epoch else RELATIVE)
        for code in range(1, _IMPOSSIBLE):
            if code != expected:
                problems.append((f"timestamp looks like {_LABELS[_CATEGORY_UNITS[code]]} in a file of "
                                 f"{unit_label(unit)} (mixed units)", codes == code))
    if epoch:
        seconds = to_seconds(values, unit)
        outside = finite & ((seconds < EPOCH_START) | (seconds > epoch_end(now)))
        problems.append((f"timestamp before 1990-01-01 or after now + 1 day as {unit_label(unit)}", outside))
    else:
        problems.append(("timestamp negative or beyond every epoch range in a file of relative seconds",
                         finite & (codes == _IMPOSSIBLE)))
    return problems
