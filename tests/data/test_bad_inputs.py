"""The corrupt-input corpus (tests/data/bad_inputs, written by recipes/bench/bad_inputs.py).

Every bad case ends in one line that names the file and what is wrong, as a typed `GamerError`
from the library and as exit status 2 from `gamer-hf prepare`, and leaves nothing behind; the
valid cases that were once mishandled prepare and say what was done.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gamer_hf import errors
from gamer_hf.cli import main
from gamer_hf.data import prepare

CORPUS = Path(__file__).with_name("bad_inputs")
SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "bench" / "bad_inputs.py"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
CLI_FLAGS = {"behaviors": "--behaviors", "format": "--format", "time_unit": "--timestamp_unit",
             "on_duplicate": "--on_duplicate"}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A private copy, so that no case can damage the committed files."""
    return Path(shutil.copytree(CORPUS, tmp_path / "corpus"))


def _paths(case: dict[str, Any], corpus: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(events, out) of a case: its file is the events, or the output when the case names other events."""
    events = case["prepare"].get("events")
    if events is not None:
        return corpus / events, corpus / case["file"]
    return corpus / case["file"], tmp_path / "prepared"


def _library_options(case: dict[str, Any]) -> dict[str, Any]:
    options = {key: value for key, value in case["prepare"].items() if key != "events"}
    if "time_unit" in options:
        options["format_options"] = {"timestamp_unit": options.pop("time_unit")}
    return options


def _argv(case: dict[str, Any], events: Path, out: Path) -> list[str]:
    argv = ["prepare", "--events", str(events), "--out", str(out), "--no_progress"]
    for key, flag in CLI_FLAGS.items():
        if key in case["prepare"]:
            argv += [flag, str(case["prepare"][key])]
    return argv


def test_the_corpus_is_what_the_script_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "fresh")], check=True, capture_output=True)
    compared = filecmp.dircmp(CORPUS, tmp_path / "fresh")
    assert not (compared.left_only or compared.right_only or compared.diff_files)
    for name in compared.common_dirs:
        sub = compared.subdirs[name]
        assert not (sub.left_only or sub.right_only or sub.diff_files), name


BAD = [case for case in MANIFEST if case["expect"] == "error"]
GOOD = [case for case in MANIFEST if case["expect"] == "ok"]


@pytest.mark.parametrize("case", BAD, ids=[case["file"] for case in BAD])
def test_a_bad_input_gets_one_line_naming_the_file_and_the_problem(
    case: dict[str, Any], corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, out = _paths(case, corpus, tmp_path)
    before = out.read_bytes() if out.is_file() else None
    with pytest.raises(getattr(errors, case["error"])) as caught:
        prepare(events, out=out, progress=False, **_library_options(case))
    message = str(caught.value)
    assert "\n" not in message
    assert str(corpus) in message or str(out) in message  # names the file it is about
    assert all(name in message for name in case["names"]), message

    assert main(_argv(case, events, out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert (out.read_bytes() if out.is_file() else None) == before  # nothing written, nothing clobbered
    assert not (tmp_path / "prepared").exists()
    assert not [path.name for path in out.parent.iterdir() if ".prepare-" in path.name]


@pytest.mark.parametrize("case", GOOD, ids=[case["file"] for case in GOOD])
def test_a_once_mishandled_valid_input_prepares_and_says_what_was_done(
    case: dict[str, Any], corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, out = _paths(case, corpus, tmp_path)
    summary = prepare(events, out=out, progress=False, **_library_options(case)).summary()
    assert all(name in summary for name in case["names"]), summary
    assert main(_argv(case, events, out)) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in case["names"]), printed
