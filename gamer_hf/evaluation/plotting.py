"""Per-behavior bar chart of one metric for every model in a report (PNG).

Draws on a bare `Figure` with the Agg canvas, so it works headless and never touches the pyplot
state or backend of the program that calls it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..files import atomic_output
from .cases import ordered_behaviors
from .metrics import MERGED
from .results import EvaluationReport

__all__ = ["plot_per_behavior"]


def plot_per_behavior(
    report: EvaluationReport, path: str | os.PathLike[str], metric: str = "NDCG@10", dpi: int = 120
) -> Path:
    """Grouped bars: behaviors (low to high level, then merged) on x, one bar per model; written atomically."""
    if not report.results:
        raise ValueError("report has no results to plot")
    known = {key for result in report.results for m in result.metrics.values() for key in m}
    if metric not in known:
        raise ValueError(f"metric {metric!r} is not in the report; available: {sorted(known)}")
    groups = [b for b in ordered_behaviors(report.behaviors) if any(b in r.metrics for r in report.results)]
    groups.append(MERGED)
    width = 0.8 / len(report.results)
    x = np.arange(len(groups))
    figure = Figure(figsize=(max(4.0, 1.2 * len(groups) * max(1, len(report.results)) ** 0.5), 3.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for i, result in enumerate(report.results):
        rows = {**result.metrics, MERGED: result.merged}
        values = [rows[g][metric] if g in rows else np.nan for g in groups]
        axes.bar(x + (i - (len(report.results) - 1) / 2) * width, values, width, label=result.name)
    labels = [f"{g}\n(target)" if g == report.target_behavior else g for g in groups]
    axes.set_xticks(x, labels)
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} per behavior")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)
