"""Semantic-ID sizes that fit the catalogue: the default when the user gives none, and a warning naming the
cause when many items collide (sizes too small, with sizes that fit; or embeddings that coincide)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gamer_hf.cli import main
from gamer_hf.semantic_ids import build_report
from gamer_hf.semantic_ids.report import collision_warnings, fitting_sizes
from gamer_hf.semantic_ids.writer import REPORT_FILENAME


@pytest.mark.parametrize(("items", "given", "sizes"), [
    (80, {}, (3, 16)), (18_000, {}, (3, 256)), (70_000, {}, (4, 64)), (10 ** 8, {}, (4, 256)),
    (18_000, {"levels": 4}, (4, 32)), (18_000, {"codebook_size": 16}, (5, 16)),
    (18_000, {"levels": 3, "codebook_size": 16}, (3, 16)),  # both given: kept as they are
])
def test_fitting_sizes(items: int, given: dict[str, int], sizes: tuple[int, int]) -> None:
    assert fitting_sizes(items, **given) == sizes
    levels, size = sizes
    assert given or items > 256 ** 3 or size ** (levels - 1) >= items > (size // 2) ** (levels - 1)


def test_too_small_sizes_warn_with_sizes_that_fit(capsys: pytest.CaptureFixture, events_folder: Path,
                                                  tmp_path: Path) -> None:
    # 67 items on 2 levels x 4 codes: 4 prefixes before the last level (like the README's old 3 x 16 on 18k items)
    argv = ["semantic-ids", "--data", str(events_folder), "--out", str(tmp_path / "tok"), "--dim", "8"]
    assert main([*argv, "--levels", "2", "--codebook_size", "4"]) == 0
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if line.startswith("warning: "))
    assert "2 levels x 4 codes leave 4 prefixes before the last level for 67 items; use --levels 3 " \
           "--codebook_size 16" in warning
    report = json.loads((tmp_path / "tok" / REPORT_FILENAME).read_text())["report"]
    assert report["collision_rate"] > 0.3 and report["warnings"] == [warning.removeprefix("warning: ")]
    assert main([*argv, "--overwrite", "true"]) == 0  # no sizes given: chosen for the catalogue
    assert "sizes: 3 levels x 16 codes, chosen for 67 items" in capsys.readouterr().out
    parameters = json.loads((tmp_path / "tok" / REPORT_FILENAME).read_text())["parameters"]
    assert (parameters["num_levels"], parameters["codebook_size"]) == (3, [16, 16, 16])


def test_coinciding_embeddings_are_named_when_the_sizes_fit() -> None:
    codes = np.array([[i % 4, i % 3, 0] for i in range(12)] + [[1, 1, 1]] * 8)  # 8 items on one tuple
    report = build_report("rqkmeans", codes, codes, [8, 8, 8], "append")
    [warning] = collision_warnings(report)
    assert warning.startswith("35% of the 20 items share their code tuple") and "do not tell them apart" in warning
    assert collision_warnings(report, threshold=0.5) == []


def test_help_names_the_text_encoder_and_why(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["semantic-ids", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Text is embedded by all-MiniLM-L6-v2" in text and "runs offline" in text
