"""Validation errors and the drop report: every removed, rejected or cleaned event is accounted for.

Readers either raise `DataValidationError` (the default) or, when asked to drop, record each
problem as a `DropRecord` so that `prepare` can print exactly what left the data and why. Values
cleaned in place (ids stripped of surrounding whitespace) are records too, with action "stripped".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ..errors import DataError

__all__ = ["DataValidationError", "DropRecord", "DropReport"]

# How many offending rows a message or a record quotes; counts are always exact.
MAX_EXAMPLES = 5


class DataValidationError(DataError):
    """Input events violate the contract; the message names file, column, row and value."""

    def __init__(
        self,
        reason: str,
        *,
        file: str,
        column: str | None = None,
        row: int | None = None,
        value: Any = None,
        count: int = 1,
        hint: str = "",
    ) -> None:
        reason = reason.replace("\r", "\\r").replace("\n", "\\n")  # one line, even quoting a parser's snippet
        self.reason, self.file, self.column, self.row, self.value, self.count = reason, file, column, row, value, count
        where = [f"file {file}"]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        message = f"{reason}: {', '.join(where)}"
        if row is not None:
            message += f", value {value!r}"
        if count > 1:
            message += f" ({count} rows in total)"
        if hint:
            message += f". {hint}"
        super().__init__(message)


@dataclass
class DropRecord:
    """One kind of problem and the rows it removed.

    `rows` are 0-based data rows of `file` with their `values`; filters that remove whole users or
    items leave `rows` empty and quote example ids in `values`. `count` is always the exact number.
    `action` is "dropped" (the rows left the data) or "stripped" (the values were cleaned, rows kept).
    """

    reason: str
    file: str
    column: str | None
    count: int
    rows: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    action: str = "dropped"

    def describe(self) -> str:
        if self.rows:
            examples = ", ".join(f"row {r}: {v!r}" for r, v in zip(self.rows, self.values))
        else:
            examples = "e.g. " + ", ".join(repr(v) for v in self.values) if self.values else ""
        column = f" column {self.column!r}" if self.column else ""
        return (f"{self.action} {self.count:,} ({self.reason}) in {self.file}{column}"
                + (f" [{examples}]" if examples else ""))


@dataclass
class DropReport:
    """All drops of one preparation run, in the order they happened."""

    records: list[DropRecord] = field(default_factory=list)

    def add(
        self, reason: str, *, file: str, column: str | None, rows: list[int], values: list[Any], count: int,
        action: str = "dropped",
    ) -> None:
        if count:
            self.records.append(
                DropRecord(reason, file, column, int(count), [int(r) for r in rows[:MAX_EXAMPLES]],
                           [_plain(v) for v in values[:MAX_EXAMPLES]], action)
            )

    def extend(self, other: "DropReport") -> None:
        self.records.extend(other.records)

    def merge_repeats(self, rules: list[int] | None = None) -> "DropReport":
        """One record per (reason, file, column, action): what chunk-by-chunk validation reports as one file's.

        `rules` (one per record) puts the merged records of each file in the order of the rules that made them.
        """
        records = self.records
        if rules is not None:
            files = {record.file: n for n, record in enumerate(reversed(records))}  # first appearance of a file
            order = sorted(range(len(records)), key=lambda i: (-files[records[i].file], rules[i], i))
            records = [records[i] for i in order]
        merged: dict[tuple, DropRecord] = {}
        for record in records:
            key = (record.reason, record.file, record.column, record.action)
            if key not in merged:
                merged[key] = DropRecord(**asdict(record))
                continue
            into = merged[key]
            into.count += record.count
            into.rows = (into.rows + record.rows)[:MAX_EXAMPLES]
            into.values = (into.values + record.values)[:MAX_EXAMPLES]
        return DropReport(list(merged.values()))

    @property
    def total(self) -> int:
        """Rows dropped (cleaned values are not counted: their rows stay)."""
        return sum(record.count for record in self.records if record.action == "dropped")

    def __bool__(self) -> bool:
        return bool(self.records)

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(record) for record in self.records]

    @classmethod
    def from_list(cls, records: list[dict[str, Any]]) -> "DropReport":
        return cls([DropRecord(**record) for record in records])

    def format(self) -> str:
        drops = [record for record in self.records if record.action == "dropped"]
        fixes = [record for record in self.records if record.action != "dropped"]
        lines = ["drops:" if drops else "drops: none"] + [f"  {record.describe()}" for record in drops]
        if fixes:
            lines += ["cleaned:"] + [f"  {record.describe()}" for record in fixes]
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """JSON-safe copy of a cell value (numpy scalars, NaN and missing values become plain Python)."""
    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
