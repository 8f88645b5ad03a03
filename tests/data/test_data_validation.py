"""Each validation rule raises an error naming file, column, row and value, or drops and reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gamer_hf.data import DataValidationError, prepare, read_events

GOOD = "user_id,item_id,behavior,timestamp\nu1,i1,click,100\nu1,i2,buy,200\nu2,i1,click,150\n"


@pytest.fixture
def write(tmp_path: Path):
    def _write(text: str, name: str = "events.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


# (file text, reason pattern, column, 0-based data row, value, rows in total)
BROKEN = {
    "null user": (GOOD + ",i3,click,300\n", "null or empty user_id", "user_id", 3, None, 1),
    "blank item": (GOOD + "u3, ,click,300\nu3,,cart,301\n", "null or empty item_id", "item_id", 3, " ", 2),
    "unknown behavior": (GOOD + "u3,i3,clik,300\n", "behavior not in the level table", "behavior", 3, "clik", 1),
    "bad timestamp": (GOOD + "u3,i3,click,yesterday\n", "null or unparsable timestamp", "timestamp", 3,
                      "yesterday", 1),
    "missing timestamp": (GOOD + "u3,i3,click,\n", "null or unparsable timestamp", "timestamp", 3, None, 1),
    "duplicate": (GOOD + "u1,i2,buy,200\n", "duplicate row", None, 3,
                  "user_id=u1, item_id=i2, behavior=buy, timestamp=200", 1),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_errors_name_file_column_row_value(write, levels: dict[str, int], case: str) -> None:
    text, reason, column, row, value, count = BROKEN[case]
    path = write(text)
    with pytest.raises(DataValidationError) as caught:
        read_events(path, behaviors=levels)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.file, error.column, error.row, error.value, error.count) == (str(path), column, row, value, count)
    message = str(error)
    assert reason in message and str(path) in message and f"row {row}" in message and repr(value) in message
    if column:
        assert repr(column) in message


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_drop_mode_counts_and_reports(write, levels: dict[str, int], case: str) -> None:
    text, reason, column, row, value, count = BROKEN[case]
    path = write(text)
    log = read_events(path, behaviors=levels, on_invalid="drop")
    assert log.events.num_rows == len(text.strip().splitlines()) - 1 - count
    [record] = log.report.records
    assert reason in record.reason and record.count == count and record.file == str(path)
    assert record.rows[0] == row and record.values[0] == value and record.column == column
    assert str(count) in log.report.format()


def test_source_column_names_appear_in_errors(write) -> None:
    path = write("timestamp,visitorid,event,itemid,transactionid\n1433221332117,257597,like,355908,\n")
    with pytest.raises(DataValidationError, match=r"column 'event', row 0, value 'like'"):
        read_events(path, format="retailrocket")


@pytest.mark.parametrize(
    ("header", "missing", "guess"),
    [("userid,item_id,behavior,timestamp", "user_id", "userid"), ("user_id,item,behavior", "item_id", "item")],
)
def test_missing_or_misnamed_columns(write, levels: dict[str, int], header: str, missing: str, guess: str) -> None:
    path = write(header + "\n" + "x," * (header.count(",")) + "x\n")
    with pytest.raises(DataValidationError, match=rf"missing column '{missing}'.*did you mean '{guess}'") as caught:
        read_events(path, behaviors=levels)
    assert caught.value.column == missing and caught.value.file == str(path)


def test_duplicates_can_be_kept_as_repeats(write, levels: dict[str, int]) -> None:
    log = read_events(write(GOOD + "u1,i2,buy,200\n"), behaviors=levels, on_duplicate="keep")
    assert log.events.num_rows == 4 and not log.report


def test_drops_accumulate_without_double_counting(write, levels: dict[str, int]) -> None:
    # row 3 has both a null item and an unknown behavior: it is counted once, under the first rule
    log = read_events(write(GOOD + "u3,,clik,300\nu3,i4,clik,301\n"), behaviors=levels, on_invalid="drop")
    assert [(r.reason.split(" ")[0], r.count) for r in log.report.records] == [("null", 1), ("behavior", 1)]
    assert log.report.total == 2


def test_users_with_too_few_events_are_reported(levels: dict[str, int]) -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["1", "2", "3", "1"],
                          "behavior": ["click", "click", "buy", "buy"], "timestamp": [1, 2, 3, 1]})  # fmt: skip
    data = prepare(frame, behaviors=levels, protocol="loo", min_user_events=2, progress=False)
    [record] = data.report.records
    assert record.count == 1 and record.values == ["b"] and "fewer than 2 events" in record.reason
    assert data.metadata["num_users"] == 1
    assert "dropped 1" in data.summary()


def test_k_core_is_reported(levels: dict[str, int]) -> None:
    frame = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["1", "2", "1", "2", "3"],
                          "behavior": ["click", "buy"] * 2 + ["buy"], "timestamp": [1, 2, 1, 2, 1]})  # fmt: skip
    data = prepare(frame, behaviors=levels, protocol="loo", k_core=2, min_user_events=1, progress=False)
    [record] = data.report.records
    assert record.count == 1 and "2-core" in record.reason and "c" in record.values and "3" in record.values
    assert data.item_ids == ["1", "2"]


def test_missing_behavior_levels_are_an_error(levels: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="no behavior preset; pass behaviors"):
        read_events(pd.DataFrame({"user_id": ["a"], "item_id": ["1"], "behavior": ["click"]}))
