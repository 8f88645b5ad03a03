"""Test cases as produced by the data pipeline, checked once so every scorer can trust them.

A row is {"user_id", "history_behaviors", "history_items", "target_behavior", "target_items"}
(a `datasets.Dataset` or any iterable of mappings). Item and user ids become `str`, the id type of
the tokenizer's item index, so an integer-typed column still matches the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..modeling import GamerVocabLayout

__all__ = ["EvalCase", "CASE_COLUMNS", "as_cases", "target_behavior", "ordered_behaviors"]

CASE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "history_behaviors",
    "history_items",
    "target_behavior",
    "target_items",
)


@dataclass(frozen=True)
class EvalCase:
    """One user's prompt (time-ordered history, oldest first) and the item set to predict under a behavior."""

    user_id: str
    history_behaviors: tuple[str, ...]
    history_items: tuple[str, ...]
    target_behavior: str
    target_items: tuple[str, ...]

    @property
    def history(self) -> list[tuple[str, str]]:
        """(behavior, item) pairs, the shape `model.recommend` and the tokenizer take."""
        return list(zip(self.history_behaviors, self.history_items))

    @classmethod
    def from_row(cls, row: Mapping[str, Any], index: int = 0) -> EvalCase:
        """Build from a pipeline row; `index` only names the row in error messages."""
        missing = [column for column in CASE_COLUMNS if column not in row]
        if missing:
            raise ValueError(f"test case row {index} lacks columns {missing}; a row needs {list(CASE_COLUMNS)}")
        behaviors = tuple(str(b) for b in row["history_behaviors"])
        items = tuple(str(i) for i in row["history_items"])
        if len(behaviors) != len(items):
            raise ValueError(
                f"test case row {index} (user {row['user_id']!r}): history_behaviors has {len(behaviors)} "
                f"entries but history_items has {len(items)}"
            )
        targets = tuple(dict.fromkeys(str(i) for i in row["target_items"]))
        if not targets:
            raise ValueError(f"test case row {index} (user {row['user_id']!r}): target_items is empty")
        return cls(str(row["user_id"]), behaviors, items, str(row["target_behavior"]), targets)


def as_cases(rows: Iterable[Mapping[str, Any] | EvalCase]) -> list[EvalCase]:
    """Rows (a Dataset, dicts, or cases already built) -> checked `EvalCase`s, order kept."""
    return [row if isinstance(row, EvalCase) else EvalCase.from_row(row, index) for index, row in enumerate(rows)]


def target_behavior(behaviors: Mapping[str, int]) -> str:
    """The target behavior of a name -> level table, by the vocabulary layout's rule (as the tokenizer and model)."""
    return GamerVocabLayout(tuple(behaviors), tuple(behaviors.values()), ()).target_behavior


def ordered_behaviors(behaviors: Mapping[str, int]) -> list[str]:
    """Behavior names low to high level (table order within a level), the order every report uses."""
    position = {name: i for i, name in enumerate(behaviors)}
    return sorted(behaviors, key=lambda name: (behaviors[name], position[name]))
