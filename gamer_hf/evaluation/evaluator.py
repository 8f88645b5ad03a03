"""One scoring path for every model: batched by requested behavior, ranked lists in, metrics out.

GAMER (through `GamerRecommender`) and the rule baselines all implement
`recommend(cases, top_k) -> list[list[str]]`; the Evaluator calls it on batches of `EvalCase`s that
share a target behavior (so one batch is one `model.recommend(..., behavior=b)` call), then scores the
lists per behavior, for the target behavior and merged, and within the repeat / explore / cold slices
(`slices.py`; cold needs `known_items`, the items seen in training). The per-case values of the
headline metrics stay on each result so reports can bootstrap differences on the same cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from tqdm.auto import tqdm

from .cases import EvalCase, as_cases, ordered_behaviors, target_behavior
from .metrics import DEFAULT_K_VALUES, METRIC_NAMES, check_k_values, group_means, metric_key, per_case_metrics
from .results import EvaluationReport, ModelResult
from .slices import EXPLORE, REPEAT, SLICES, slice_labels, slice_mask

__all__ = ["Recommender", "Evaluator"]

T = TypeVar("T")


@runtime_checkable
class Recommender(Protocol):
    """Anything that ranks items for test cases: item ids best first, one list per case."""

    def recommend(self, cases: list[EvalCase], top_k: int) -> list[list[str]]: ...


class Evaluator:
    """Score recommenders on fixed test cases with HR/Recall/NDCG@K per behavior, target and merged."""

    def __init__(
        self,
        cases: Iterable[Mapping[str, Any] | EvalCase],
        behaviors: Mapping[str, int],
        k_values: Sequence[int] = DEFAULT_K_VALUES,
        batch_size: int = 64,
        progress: bool = True,
        known_items: Iterable[str] | None = None,
    ) -> None:
        """`known_items`: the item ids seen in training, which defines the cold slice (None: no cold slice)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.behaviors = dict(behaviors)
        self.target_behavior = target_behavior(self.behaviors)
        self.k_values = check_k_values(k_values)
        self.batch_size = batch_size
        self.progress = progress
        self.cases = as_cases(cases)
        if not self.cases:
            raise ValueError("no test cases to evaluate")
        groups: dict[str, list[int]] = {b: [] for b in ordered_behaviors(self.behaviors)}
        for index, case in enumerate(self.cases):
            if case.target_behavior not in groups:
                raise ValueError(
                    f"test case {index} (user {case.user_id!r}) asks for behavior {case.target_behavior!r}, "
                    f"not in the behavior table {sorted(self.behaviors)}"
                )
            groups[case.target_behavior].append(index)
        self.groups = {b: indices for b, indices in groups.items() if indices}
        self.case_behaviors = [case.target_behavior for case in self.cases]
        self.case_slices = slice_labels(self.cases, known_items)
        self.slice_names = SLICES if known_items is not None else (REPEAT, EXPLORE)

    @property
    def top_k(self) -> int:
        """The list length requested from recommenders: the largest cut-off."""
        return self.k_values[-1]

    def predict(self, fn: Callable[[list[EvalCase], int], Sequence[T]], desc: str = "predict") -> list[T]:
        """Call `fn(batch, top_k)` on same-behavior batches; outputs come back aligned with `self.cases`.

        Useful on its own to keep GAMER's scored lists once and score many `HistoryMixer`s on them.
        """
        out: list[Any] = [None] * len(self.cases)
        with tqdm(total=len(self.cases), desc=desc, unit="case", disable=not self.progress) as bar:
            for behavior, indices in self.groups.items():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    outputs = fn([self.cases[i] for i in chunk], self.top_k)
                    if len(outputs) != len(chunk):
                        raise ValueError(
                            f"{desc}: got {len(outputs)} outputs for a batch of {len(chunk)} {behavior!r} cases"
                        )
                    for i, output in zip(chunk, outputs):
                        out[i] = output
                    bar.update(len(chunk))
        return out

    @property
    def headline_k(self) -> int:
        """The cut-off whose per-case values every result keeps: 10 when evaluated, else the largest."""
        return 10 if 10 in self.k_values else self.top_k

    def score(
        self, rankings: Sequence[Sequence[str]], name: str, seconds: float | None = None, baseline: bool = False
    ) -> ModelResult:
        """Metrics of ranked item-id lists aligned with `self.cases` (longer lists are cut at top_k).

        `baseline` marks a reference model: reports compare every other model with the best of them.
        """
        if len(rankings) != len(self.cases):
            raise ValueError(f"{name}: {len(rankings)} rankings for {len(self.cases)} test cases")
        for index, ranking in enumerate(rankings):
            bad = next((item for item in ranking if not isinstance(item, str)), None)
            if bad is not None:
                raise TypeError(
                    f"{name}: ranking of case {index} (user {self.cases[index].user_id!r}) holds {bad!r} "
                    f"of type {type(bad).__name__}; item ids must be str"
                )
        per_case = per_case_metrics(rankings, [c.target_items for c in self.cases], self.k_values)
        order = list(self.groups)  # behaviors low to high level, as every report lists them
        metrics, counts = group_means(per_case, self.case_behaviors)
        slices, slice_cases = {}, {}
        for slice_name in self.slice_names:
            rows, n = group_means(per_case, self.case_behaviors, slice_mask(self.case_slices, slice_name))
            slices[slice_name] = {b: rows[b] for b in order if b in rows}
            slice_cases[slice_name] = {b: n[b] for b in order if b in n}
        headline = [metric_key(metric, self.headline_k) for metric in METRIC_NAMES if metric != "Recall"]
        return ModelResult(
            name,
            self.target_behavior,
            {b: metrics[b] for b in order},
            {b: counts[b] for b in order},
            seconds,
            slices=slices,
            slice_cases=slice_cases,
            per_case={key: per_case[key].tolist() for key in headline},
            baseline=baseline,
        )

    def evaluate(self, recommender: Recommender, name: str | None = None, baseline: bool = False) -> ModelResult:
        """Rank every case with `recommender.recommend` and score it; records wall time in `seconds`."""
        if not isinstance(recommender, Recommender):
            raise TypeError(f"{type(recommender).__name__} has no recommend(cases, top_k) method")
        name = name or type(recommender).__name__
        start = time.perf_counter()
        rankings = self.predict(recommender.recommend, desc=f"evaluate {name}")
        return self.score(rankings, name, seconds=time.perf_counter() - start, baseline=baseline)

    def report(self, metadata: Mapping[str, Any] | None = None) -> EvaluationReport:
        """An empty report with this evaluator's behavior table and cut-offs, to `add` results to."""
        return EvaluationReport(
            self.behaviors,
            self.k_values,
            metadata=dict(metadata or {}),
            case_behaviors=list(self.case_behaviors),
            case_slices=list(self.case_slices),
        )

    def evaluate_all(
        self,
        recommenders: Mapping[str, Recommender],
        metadata: Mapping[str, Any] | None = None,
        baselines: Iterable[str] = (),
    ) -> EvaluationReport:
        """Evaluate several named recommenders on the same cases into one report; `baselines` names the
        reference models."""
        report = self.report(metadata)
        baselines = set(baselines)
        for name, recommender in recommenders.items():
            report.add(self.evaluate(recommender, name, baseline=name in baselines))
        return report
