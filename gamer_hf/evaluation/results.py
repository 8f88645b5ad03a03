"""Evaluation results: per model, per behavior metrics with case counts; saved as JSON and markdown.

The JSON keeps what is needed to recompute "merged" (per-behavior metrics and case counts) and also
stores the merged and target rows so model cards and benchmark tables can read them directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_output, read_json
from .cases import ordered_behaviors, target_behavior
from .metrics import DEFAULT_K_VALUES, MERGED, METRIC_NAMES, check_k_values, merge_metrics, metric_key

__all__ = ["ModelResult", "EvaluationReport"]

_SHORT_NAMES = {"HR": "HR", "Recall": "R", "NDCG": "N"}


@dataclass
class ModelResult:
    """One model's scores: behavior -> metric key ('NDCG@10') -> mean over that behavior's test cases."""

    name: str
    target_behavior: str
    metrics: dict[str, dict[str, float]]
    num_cases: dict[str, int]
    seconds: float | None = None

    @property
    def merged(self) -> dict[str, float]:
        """Average over behaviors weighted by their number of test cases."""
        return merge_metrics(self.metrics, self.num_cases)

    @property
    def target(self) -> dict[str, float]:
        """The metrics of the top-level behavior."""
        if self.target_behavior not in self.metrics:
            raise KeyError(f"model {self.name!r} has no test cases for the target behavior {self.target_behavior!r}")
        return self.metrics[self.target_behavior]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "target_behavior": self.target_behavior,
            "num_cases": dict(self.num_cases),
            "metrics": {b: dict(m) for b, m in self.metrics.items()},
            MERGED: self.merged,
            "seconds": self.seconds,
        }
        if self.target_behavior in self.metrics:
            out["target"] = dict(self.target)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResult:
        """Inverse of `to_dict`; the stored merged/target rows are derived data and are recomputed."""
        return cls(
            name=data["name"],
            target_behavior=data["target_behavior"],
            metrics={b: dict(m) for b, m in data["metrics"].items()},
            num_cases={b: int(n) for b, n in data["num_cases"].items()},
            seconds=data.get("seconds"),
        )


@dataclass
class EvaluationReport:
    """All models scored on one set of test cases, with the behavior table and cut-offs they share."""

    behaviors: dict[str, int]
    k_values: tuple[int, ...] = DEFAULT_K_VALUES
    results: list[ModelResult] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.k_values = check_k_values(self.k_values)
        target_behavior(self.behaviors)  # fail early on a table without a unique top level
        for result in self.results:
            self._check(result)

    @property
    def target_behavior(self) -> str:
        return target_behavior(self.behaviors)

    def add(self, result: ModelResult) -> ModelResult:
        """Append a model's result; names must be unique within a report."""
        if any(r.name == result.name for r in self.results):
            raise ValueError(f"report already has a result named {result.name!r}")
        self._check(result)
        self.results.append(result)
        return result

    def __getitem__(self, name: str) -> ModelResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no result named {name!r}; have {[r.name for r in self.results]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "behaviors": dict(self.behaviors),
            "target_behavior": self.target_behavior,
            "k_values": list(self.k_values),
            "metadata": self.metadata,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        return cls(
            behaviors=dict(data["behaviors"]),
            k_values=tuple(data["k_values"]),
            results=[ModelResult.from_dict(r) for r in data["results"]],
            metadata=dict(data.get("metadata", {})),
        )

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as JSON atomically; returns the path."""
        with atomic_output(path) as temporary:
            temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> EvaluationReport:
        return cls.from_dict(read_json(path))

    def to_markdown(self, digits: int = 4) -> str:
        """One row per model and behavior (low to high level, then merged); columns HR@K, R@K, N@K."""
        keys = [metric_key(name, k) for name in METRIC_NAMES for k in self.k_values]
        headers = [f"{_SHORT_NAMES[name]}@{k}" for name in METRIC_NAMES for k in self.k_values]
        lines = [
            "| Model | Behavior | Cases | " + " | ".join(headers) + " |",
            "|---|---|---:|" + "---:|" * len(headers),
        ]
        for result in self.results:
            behaviors = [b for b in ordered_behaviors(self.behaviors) if b in result.metrics]
            rows = [(b, result.metrics[b], result.num_cases[b]) for b in behaviors]
            rows.append((MERGED, result.merged, sum(result.num_cases[b] for b in result.metrics)))
            for behavior, metrics, cases in rows:
                label = f"{behavior} (target)" if behavior == self.target_behavior else behavior
                values = " | ".join(f"{metrics[key]:.{digits}f}" for key in keys)
                lines.append(f"| {result.name} | {label} | {cases} | {values} |")
        return "\n".join(lines) + "\n"

    def save_markdown(self, path: str | os.PathLike[str], digits: int = 4) -> Path:
        """Write `to_markdown()` atomically; returns the path."""
        with atomic_output(path) as temporary:
            temporary.write_text(self.to_markdown(digits), encoding="utf-8")
        return Path(path)

    def _check(self, result: ModelResult) -> None:
        unknown = sorted(set(result.metrics) - set(self.behaviors))
        if unknown:
            raise ValueError(
                f"result {result.name!r} has behaviors {unknown} not in the behavior table {self.behaviors}"
            )
        uncounted = sorted(set(result.metrics) - set(result.num_cases))
        if uncounted:
            raise ValueError(f"result {result.name!r} has no case counts for behaviors {uncounted}")
