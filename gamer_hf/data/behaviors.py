"""The behavior table: names, their identity order and their intent levels.

Identity order (the dict order) fixes the behavior token ids; levels fix the hierarchy used by the
cross-level attention and by augmentation. Several behaviors may share a level; the target behavior
is the unique top-level one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Union

__all__ = ["BehaviorTable", "BehaviorSpec", "PRESETS"]

BehaviorSpec = Union["BehaviorTable", Mapping[str, int], str, Iterable[str]]

# Presets of the public formats (raw behavior names as the adapters emit them).
PRESETS: dict[str, dict[str, int]] = {
    "retailrocket": {"view": 0, "cart": 1, "buy": 2},
    "taobao": {"pv": 0, "fav": 1, "cart": 1, "buy": 2},
    "tmall": {"click": 0, "fav": 1, "cart": 1, "buy": 2},
}


class BehaviorTable:
    """Ordered mapping behavior name -> integer level (higher = stronger intent)."""

    def __init__(self, levels: Mapping[str, int]) -> None:
        if not levels:
            raise ValueError("a behavior table needs at least one behavior")
        table: dict[str, int] = {}
        for name, level in levels.items():
            if not isinstance(name, str) or not name or name != name.strip():
                raise ValueError(f"behavior names must be non-empty strings without surrounding spaces, got {name!r}")
            if isinstance(level, bool) or not isinstance(level, int):
                raise ValueError(f"behavior {name!r} has level {level!r}; levels must be integers")
            table[name] = level
        self._levels = table

    @classmethod
    def parse(cls, spec: BehaviorSpec) -> "BehaviorTable":
        """Accept a table, a mapping, `"click:0,cart:1,buy:2"`, `"click<fav=cart<buy"`, or names low to high."""
        if isinstance(spec, BehaviorTable):
            return spec
        if isinstance(spec, Mapping):
            return cls({str(k): int(v) for k, v in spec.items()})
        if isinstance(spec, str):
            text = spec.strip()
            if ":" in text:
                levels: dict[str, int] = {}
                for part in filter(None, (p.strip() for p in text.split(","))):
                    name, sep, level = part.rpartition(":")
                    if not sep or not name.strip() or not re.fullmatch(r"-?\d+", level.strip()):
                        raise ValueError(f"cannot parse behavior {part!r} in {spec!r}; expected name:level")
                    levels[name.strip()] = int(level)
                return cls(levels)
            if "<" in text or "=" in text:
                levels = {}
                for level, group in enumerate(text.split("<")):
                    for name in group.split("="):
                        levels[name.strip()] = level
                return cls(levels)
            return cls({name.strip(): level for level, name in enumerate(text.split(",")) if name.strip()})
        return cls({str(name): level for level, name in enumerate(spec)})

    @property
    def levels(self) -> dict[str, int]:
        return dict(self._levels)

    @property
    def names(self) -> list[str]:
        return list(self._levels)

    def level(self, name: str) -> int:
        return self._levels[name]

    def __contains__(self, name: object) -> bool:
        return name in self._levels

    def __len__(self) -> int:
        return len(self._levels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BehaviorTable) and list(self._levels.items()) == list(other._levels.items())

    def __repr__(self) -> str:
        return f"BehaviorTable({self._levels})"

    @property
    def top_level(self) -> int:
        return max(self._levels.values())

    @property
    def top_behaviors(self) -> list[str]:
        return [name for name, level in self._levels.items() if level == self.top_level]

    @property
    def target(self) -> str:
        """The unique top-level behavior; ambiguous tables must name one explicitly where it matters."""
        top = self.top_behaviors
        if len(top) != 1:
            raise ValueError(
                f"behaviors {top} share the top level {self.top_level}; name the target behavior explicitly"
            )
        return top[0]

    def hierarchy_rank(self, name: str) -> int:
        """1-based rank of the behavior's level among the distinct levels (L_b of the augmentation)."""
        return sorted(set(self._levels.values())).index(self._levels[name]) + 1

    def describe(self) -> str:
        by_level: dict[int, list[str]] = {}
        for name, level in self._levels.items():
            by_level.setdefault(level, []).append(name)
        return " < ".join(" = ".join(by_level[level]) for level in sorted(by_level))
