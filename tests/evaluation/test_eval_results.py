"""Reports: JSON round trip, markdown table, per-behavior bar chart, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gamer_hf.evaluation import EvaluationReport, Evaluator, ModelResult, MostPopular, Repeat, plot_per_behavior
from gamer_hf.files import atomic_output


@pytest.fixture
def report(cases, behaviors, train_events) -> EvaluationReport:
    evaluator = Evaluator(cases, behaviors, progress=False)
    return evaluator.evaluate_all(
        {"MostPopular": MostPopular().fit(train_events), "Repeat": Repeat()}, metadata={"split": "test"}
    )


def test_json_round_trip_and_derived_rows(report: EvaluationReport, tmp_path: Path) -> None:
    path = report.save_json(tmp_path / "nested" / "eval.json")
    data = json.loads(path.read_text())
    assert data["target_behavior"] == "buy" and data["k_values"] == [1, 5, 10]
    stored = data["results"][1]
    assert stored["merged"] == pytest.approx(report["Repeat"].merged)
    assert stored["target"] == report["Repeat"].metrics["buy"]
    loaded = EvaluationReport.load_json(path)
    assert loaded.to_dict() == report.to_dict()
    assert [p.name for p in path.parent.iterdir()] == ["eval.json"]  # no temp file left behind


def test_markdown_rows_and_columns(report: EvaluationReport) -> None:
    lines = report.to_markdown(digits=3).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Model", "Behavior", "Cases"] + [f"{m}@{k}" for m in ("HR", "R", "N") for k in (1, 5, 10)]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2 : lines.index("")]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (model, behavior, cases)
        for model in ("MostPopular", "Repeat")
        for behavior, cases in (("click", "3"), ("cart", "1"), ("buy (target)", "3"), ("merged", "7"))
    ]
    repeat_merged = report["Repeat"].merged
    assert rows[-1][3:] == [f"{repeat_merged[k]:.3f}" for k in repeat_merged]


def test_markdown_file_is_written(report: EvaluationReport, tmp_path: Path) -> None:
    path = report.save_markdown(tmp_path / "eval.md")
    assert path.read_text() == report.to_markdown()


def test_bar_chart_png(report: EvaluationReport, tmp_path: Path) -> None:
    path = plot_per_behavior(report, tmp_path / "ndcg.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ndcg.png"]
    with pytest.raises(ValueError, match="'NDCG@20' is not in the report"):
        plot_per_behavior(report, tmp_path / "x.png", metric="NDCG@20")


def test_report_rejects_inconsistent_results(report: EvaluationReport) -> None:
    with pytest.raises(ValueError, match="already has a result named 'Repeat'"):
        report.add(report["Repeat"])
    with pytest.raises(ValueError, match=r"behaviors \['fav'\] not in the behavior table"):
        report.add(ModelResult("x", "buy", {"fav": {"HR@1": 1.0}}, {"fav": 1}))
    with pytest.raises(KeyError, match="no result named 'TIGER'"):
        report["TIGER"]
    with pytest.raises(KeyError, match="no test cases for the target behavior"):
        _ = ModelResult("x", "buy", {"click": {"HR@1": 1.0}}, {"click": 1}).target


def test_atomic_output_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
