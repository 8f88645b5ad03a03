"""Evaluation results: per model, per behavior metrics with case counts; saved as JSON and markdown.

The JSON keeps what is needed to recompute "merged" (per-behavior metrics and case counts) and also
stores the merged and target rows so model cards and benchmark tables can read them directly.
Each result also carries its repeat / explore / cold slices (see `slices.py`) and the per-case values
of the headline metrics, so a report can give every model's paired-bootstrap difference to the best
baseline on the same cases.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_output, read_json
from .bootstrap import Difference, seed_pooled_bootstrap
from .cases import ordered_behaviors, target_behavior
from .metrics import DEFAULT_K_VALUES, MERGED, METRIC_NAMES, check_k_values, merge_metrics, metric_key
from .slices import SLICES, slice_mask

__all__ = ["ALL_CASES", "ModelResult", "EvaluationReport", "seed_pooled_differences"]

ALL_CASES = "all"  # the slice name of every case in `EvaluationReport.differences`

_SHORT_NAMES = {"HR": "HR", "Recall": "R", "NDCG": "N"}


@dataclass
class ModelResult:
    """One model's scores: behavior -> metric key ('NDCG@10') -> mean over that behavior's test cases."""

    name: str
    target_behavior: str
    metrics: dict[str, dict[str, float]]
    num_cases: dict[str, int]
    seconds: float | None = None
    # slice ("repeat" / "explore" / "cold") -> behavior -> metrics, and the matching case counts
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    slice_cases: dict[str, dict[str, int]] = field(default_factory=dict)
    # headline metric key -> its value on every case, aligned with the evaluator's cases
    per_case: dict[str, list[float]] = field(default_factory=dict)
    baseline: bool = False  # a reference model (rule or learned baseline) the others are compared with

    def slice_merged(self, name: str) -> dict[str, float]:
        """A slice's metrics averaged over behaviors, weighted by the slice's cases per behavior."""
        if name not in self.slices:
            raise KeyError(f"model {self.name!r} has no slice {name!r}; have {sorted(self.slices)}")
        return merge_metrics(self.slices[name], self.slice_cases[name])

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
            "baseline": self.baseline,
            "slices": {name: {b: dict(m) for b, m in rows.items()} for name, rows in self.slices.items()},
            "slice_cases": {name: dict(counts) for name, counts in self.slice_cases.items()},
            "per_case": {key: [round(float(v), 6) for v in values] for key, values in self.per_case.items()},
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
            slices={name: {b: dict(m) for b, m in rows.items()} for name, rows in data.get("slices", {}).items()},
            slice_cases={name: {b: int(n) for b, n in c.items()} for name, c in data.get("slice_cases", {}).items()},
            per_case={key: [float(v) for v in values] for key, values in data.get("per_case", {}).items()},
            baseline=bool(data.get("baseline", False)),
        )


@dataclass
class EvaluationReport:
    """All models scored on one set of test cases, with the behavior table and cut-offs they share."""

    behaviors: dict[str, int]
    k_values: tuple[int, ...] = DEFAULT_K_VALUES
    results: list[ModelResult] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # per case, aligned with every result's `per_case`: its target behavior and finest slice
    case_behaviors: list[str] = field(default_factory=list)
    case_slices: list[str] = field(default_factory=list)

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
            "case_behaviors": list(self.case_behaviors),
            "case_slices": list(self.case_slices),
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        return cls(
            behaviors=dict(data["behaviors"]),
            k_values=tuple(data["k_values"]),
            results=[ModelResult.from_dict(r) for r in data["results"]],
            metadata=dict(data.get("metadata", {})),
            case_behaviors=list(data.get("case_behaviors", [])),
            case_slices=list(data.get("case_slices", [])),
        )

    def case_mask(self, behavior: str | None = None, slice_name: str = ALL_CASES) -> np.ndarray:
        """The cases of `behavior` (None: every behavior) within `slice_name` ("all" or one of SLICES)."""
        if not self.case_behaviors:
            raise ValueError("this report has no per-case labels (made without Evaluator.report?)")
        mask = np.ones(len(self.case_behaviors), dtype=bool)
        if behavior is not None:
            mask &= np.array([b == behavior for b in self.case_behaviors], dtype=bool)
        if slice_name != ALL_CASES:
            mask &= slice_mask(self.case_slices, slice_name)
        return mask

    def differences(
        self,
        metric: str,
        behavior: str | None = None,
        slice_name: str = ALL_CASES,
        *,
        num_samples: int = 2000,
        seed: int = 0,
    ) -> tuple[str, dict[str, Difference]] | None:
        """The best baseline on these cases and every other model's paired-bootstrap difference to it.

        `behavior` None means every behavior (merged); None is returned when no baseline has per-case
        values of `metric` or the selection holds no case.
        """
        return seed_pooled_differences([self], metric, behavior, slice_name, num_samples=num_samples, seed=seed)

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
        lines += self._slice_markdown(digits) + self._difference_markdown()
        return "\n".join(lines) + "\n"

    @property
    def headline_k(self) -> int:
        """The cut-off of the slice and bootstrap tables: 10 when evaluated, else the largest."""
        return 10 if 10 in self.k_values else self.k_values[-1]

    def _slice_markdown(self, digits: int) -> list[str]:
        """Per model and behavior: cases and NDCG@K of the repeat, explore and cold slices."""
        names = [name for name in SLICES if any(name in r.slices for r in self.results)]
        if not names:
            return []
        key = metric_key("NDCG", self.headline_k)
        lines = [
            "",
            f"Slices (repeat: a target is in the prompt; explore: none is; cold: explore, no target seen in "
            f"training), {key}:",
            "",
            "| Model | Behavior | " + " | ".join(f"{n} cases | {n} {key}" for n in names) + " |",
            "|---|---|" + "---:|---:|" * len(names),
        ]
        for result in self.results:
            behaviors = [b for b in ordered_behaviors(self.behaviors) if b in result.metrics] + [MERGED]
            for behavior in behaviors:
                cells = []
                for name in names:
                    counts = result.slice_cases.get(name, {})
                    if behavior == MERGED:
                        cases = sum(counts.values())
                        value = result.slice_merged(name)[key] if cases else None
                    else:
                        cases = counts.get(behavior, 0)
                        value = result.slices[name][behavior][key] if cases else None
                    cells += [str(cases), "-" if value is None else f"{value:.{digits}f}"]
                label = f"{behavior} (target)" if behavior == self.target_behavior else behavior
                lines.append(f"| {result.name} | {label} | " + " | ".join(cells) + " |")
        return lines

    def _difference_markdown(self) -> list[str]:
        """Target-behavior NDCG@K difference to the best baseline per slice, with paired-bootstrap 95% intervals."""
        key = metric_key("NDCG", self.headline_k)
        if not self.case_behaviors or not any(r.baseline and key in r.per_case for r in self.results):
            return []
        target = self.target_behavior
        compared = {}
        for name in (ALL_CASES, *SLICES):
            found = self.differences(key, target, name)
            if found is not None:
                compared[name] = (int(self.case_mask(target, name).sum()), *found)
        if not compared:
            return []
        lines = [
            "",
            f"{target} (target) {key} minus the best baseline on the same cases: mean [95% paired-bootstrap interval]",
            "",
            "| Model | " + " | ".join(f"{name} ({cases} cases, best {best})" for name, (cases, best, _) in compared.items())
            + " |",
            "|---|" + "---:|" * len(compared),
        ]
        for result in self.results:
            cells = [str(diffs[result.name]) if result.name in diffs else "best" if best == result.name else "-"
                     for _, best, diffs in compared.values()]
            lines.append(f"| {result.name} | " + " | ".join(cells) + " |")
        return lines

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
        for key, values in result.per_case.items():
            if self.case_behaviors and len(values) != len(self.case_behaviors):
                raise ValueError(
                    f"result {result.name!r} has {len(values)} per-case {key} values for a report of "
                    f"{len(self.case_behaviors)} cases: results of one report must score the same cases"
                )


def seed_pooled_differences(reports: Sequence[EvaluationReport], metric: str, behavior: str | None = None,
                            slice_name: str = ALL_CASES, *, num_samples: int = 2000, seed: int = 0
                            ) -> tuple[str, dict[str, Difference]] | None:
    """`EvaluationReport.differences` over training seeds: one report per seed, all on the same cases.

    The best baseline is the one with the highest seed-mean on these cases, and every other model's difference
    to it is `seed_pooled_bootstrap` over the seeds that scored it, so no seed is picked. Models missing
    per-case values of `metric` in any report are left out; None as in `differences`.
    """
    if not reports:
        raise ValueError("seed_pooled_differences needs at least one report")
    first = reports[0]
    for report in reports[1:]:
        if (report.case_behaviors, report.case_slices) != (first.case_behaviors, first.case_slices):
            raise ValueError("seed_pooled_differences: the reports must score the same cases (their labels differ)")
    mask = first.case_mask(behavior, slice_name)
    names = [r.name for r in first.results if all(
        any(o.name == r.name and metric in o.per_case for o in report.results) for report in reports)]
    values = {name: np.stack([np.asarray(report[name].per_case[metric])[mask] for report in reports]) for name in names}
    baselines = [name for name in names if first[name].baseline]
    if not baselines or not mask.any():
        return None
    best = max(baselines, key=lambda name: values[name].mean())
    return best, {name: seed_pooled_bootstrap(values[name], values[best], num_samples=num_samples, seed=seed)
                  for name in names if name != best}
