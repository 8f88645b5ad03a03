"""Chunk-wise value checks: timestamp units from magnitudes, impossible times, id whitespace and length."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from gamer_hf.data import DataValidationError, read_events
from gamer_hf.data.checks import (
    EPOCH_START,
    MAX_ID_LENGTH,
    TimestampProfile,
    overlong_ids,
    shorten,
    strip_ids,
    timestamp_problems,
    to_seconds,
)
from gamer_hf.errors import ConfigurationError

NOW = 1_764_547_200.0  # 2025-12-01: a fixed clock for the checks that take one
START = 1_700_000_000.0


def _log(times, **options):
    frame = pd.DataFrame({"user_id": [f"u{i % 3}" for i in range(len(times))],
                          "item_id": [f"i{i}" for i in range(len(times))],
                          "behavior": "click", "timestamp": times})  # fmt: skip
    return read_events(frame, "events", {"click": 0, "buy": 1}, **options)


@pytest.mark.parametrize(("scale", "unit"), [(1, "s"), (1e3, "ms"), (1e6, "us"), (1e9, "ns")])
def test_the_unit_is_the_epoch_unit_the_magnitudes_fit(scale: float, unit: str) -> None:
    values = (START + np.arange(50) * 97.0) * scale
    assert TimestampProfile.of(values, now=NOW).detect() == unit
    assert to_seconds(values, unit) == pytest.approx(START + np.arange(50) * 97.0)
    assert not any(mask.any() for _, mask in timestamp_problems(values, unit, detected=True, now=NOW))


def test_small_offsets_are_relative_seconds() -> None:
    assert TimestampProfile.of(np.arange(0, 10_000, 7.0), now=NOW).detect() == "relative"


@pytest.mark.parametrize("pieces", [1, 2, 7])
def test_profiles_of_chunks_merge_into_the_profile_of_the_whole(pieces: int) -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([START + rng.random(60) * 1e6, (START + rng.random(40) * 1e6) * 1e3, [-5.0, np.nan, 1e20]])
    rng.shuffle(values)
    chunks = [TimestampProfile.of(pd.Series(chunk), now=NOW) for chunk in np.array_split(values, pieces)]
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged.merge(chunk)
    assert merged == TimestampProfile.of(values, now=NOW)
    assert merged.detect() == "s"


def test_rows_in_another_unit_or_impossible_are_named_separately() -> None:
    values = np.array([START, START + 1, (START + 2) * 1e3, -5.0, 1e20, np.nan, 100.0])
    problems = {reason: np.flatnonzero(mask).tolist() for reason, mask in timestamp_problems(values, "s", now=NOW)}
    assert problems["timestamp looks like unix milliseconds in a file of unix seconds (mixed units)"] == [2]
    assert problems["timestamp before 1990-01-01 or after now + 1 day as unix seconds"] == [2, 3, 4, 6]


@pytest.mark.parametrize(("unit", "detected", "refused"), [("relative", True, [0]), ("relative", False, []),
                                                          ("relative_ms", False, [])])
def test_relative_times_are_checked_only_when_detected(unit: str, detected: bool, refused: list[int]) -> None:
    values = np.array([-30.0, 0.0, 60.0, 120.0])
    masks = timestamp_problems(values, unit, detected=detected, now=NOW)
    assert sorted({int(i) for _, mask in masks for i in np.flatnonzero(mask)}) == refused


def test_date_times_must_lie_between_1990_and_tomorrow() -> None:
    seconds = np.array([EPOCH_START - 1, START, NOW + 2 * 86_400])
    [(reason, mask)] = timestamp_problems(seconds, "datetime", now=NOW)
    assert "date-time" in reason and mask.tolist() == [True, False, True]


def test_an_unknown_unit_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown timestamp unit 'hours'"):
        _log([START, START + 1], timestamp_unit="hours")


def test_mixed_units_drop_the_minority_and_record_the_detected_unit() -> None:
    log = _log([START, START + 60, START + 120, (START + 180) * 1e3], on_invalid="drop")
    assert (log.time_unit, log.time_unit_detected) == ("s", True)
    [record] = log.report.records
    assert "mixed units" in record.reason and record.rows == [3] and record.count == 1
    assert log.events.num_rows == 3


def test_a_given_relative_unit_accepts_offsets_an_epoch_unit_refuses() -> None:
    log = _log([-60, 0, 60], timestamp_unit="relative")
    assert log.events["timestamp"] == [-60.0, 0.0, 60.0] and (log.time_unit, log.time_unit_detected) == ("relative", False)
    with pytest.raises(DataValidationError, match=r"before 1990-01-01 .* row 0, value -60"):
        _log([-60, 0, 60], timestamp_unit="s")
    with pytest.raises(DataValidationError, match=r"row 0, value -60"):  # detected: offsets are non-negative
        _log([-60, 0, 60])


@pytest.mark.parametrize("container", ["arrow", "pandas"])
def test_ids_lose_surrounding_whitespace_and_long_ones_are_found(container: str) -> None:
    values = [" 1 ", "1", None, "\t2", "x" * (MAX_ID_LENGTH + 1)]
    column = pa.array(values) if container == "arrow" else pd.Series(values)
    stripped, changed = strip_ids(column)
    assert stripped.to_pylist()[:4] == ["1", "1", None, "2"] and changed.tolist() == [True, False, False, True, False]
    assert overlong_ids(column).tolist() == [False, False, False, False, True]
    assert shorten(column).to_pylist()[4] == "x" * 40 + f"... ({MAX_ID_LENGTH + 1} characters)"


def test_padded_and_plain_ids_are_one_item_and_the_stripping_is_reported() -> None:
    frame = pd.DataFrame({"user_id": ["u", "u ", "u"], "item_id": [" 1 ", "1", "2"], "behavior": ["click"] * 3,
                          "timestamp": [START, START + 1, START + 2]})  # fmt: skip
    log = read_events(frame, "events", {"click": 0})
    assert log.events["item_id"] == ["1", "1", "2"] and log.events["user_id"] == ["u"] * 3
    stripped = {record.column: (record.count, record.rows, record.values) for record in log.report.records}
    assert stripped == {"user_id": (1, [1], ["u "]), "item_id": (1, [0], [" 1 "])}
    assert log.report.total == 0 and "cleaned:" in log.report.format() and "drops: none" in log.report.format()
