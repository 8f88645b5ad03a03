"""The quickstart's picture: training and validation loss, and NDCG@10 per behavior and model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .evaluation import EvaluationReport, ordered_behaviors
from .files import atomic_output

__all__ = ["plot_training_summary"]


def plot_training_summary(
    log_history: Sequence[dict[str, Any]], report: EvaluationReport, path: str | os.PathLike, metric: str = "NDCG@10"
) -> Path:
    """Two panels in one PNG, written atomically."""
    figure = Figure(figsize=(11, 4))
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for key, label in (("loss", "train"), ("eval_loss", "validation")):
        points = [(row["epoch"], row[key]) for row in log_history if key in row and "epoch" in row]
        if points:
            loss_axes.plot(*zip(*points), marker="o" if key == "eval_loss" else None, label=label)
    loss_axes.set(xlabel="epoch", ylabel="loss (code tokens)", title="training")
    loss_axes.legend()
    groups = [b for b in ordered_behaviors(report.behaviors) if any(b in r.metrics for r in report.results)]
    width = 0.8 / max(1, len(report.results))
    x = np.arange(len(groups))
    for i, result in enumerate(report.results):
        values = [result.metrics.get(b, {}).get(metric, 0.0) for b in groups]
        metric_axes.bar(x + i * width - 0.4 + width / 2, values, width, label=result.name)
    metric_axes.set_xticks(x, groups)
    metric_axes.set(ylabel=metric, title=f"{metric} per requested behavior")
    metric_axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    return path
