"""The CLI's one error policy: every subcommand meets a bad input with one line naming the problem and
exit code 2, leaves no partial output, and shows the traceback only with --debug. The broken
checkpoints of conftest.BROKEN are refused by every command that loads a checkpoint."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from gamer_hf.checkpoint import load_checkpoint
from gamer_hf.cli import COMMANDS, main
from gamer_hf.errors import CheckpointError

from .conftest import BROKEN

DEAD_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens, so any Hub call would fail differently


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> str:
    """Run the CLI in-process; assert exit 2 and one stderr line `gamer-hf CMD: error: ...` matching `message`."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"gamer-hf {argv[0]}: error: ")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    assert re.search(message, lines[0]), lines[0]
    return lines[0]


def _bad_inputs(tmp_path: Path, prepared: Path, tokenizer: Path, checkpoint: Path) -> dict[str, tuple[list[str], str]]:
    missing = tmp_path / "no_such_file.csv"
    return {
        "prepare": (["--events", str(missing), "--out", str(tmp_path / "p")], re.escape(str(missing))),
        "semantic-ids": (["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")], "not found"),
        "train": (["--data", str(prepared), "--tokenizer", str(tokenizer), "--output_dir", str(checkpoint)],
                  "already holds a finished model"),
        "evaluate": (["--model", str(checkpoint), "--data", str(prepared), "--split", "nosuch"], "no split 'nosuch'"),
        "recommend": (["--model", str(checkpoint), "--history", "click:not-an-item"], r"unknown to .*\(click:not-an-item\); pass --skip_unknown"),
        "quickstart": (["--events", str(missing), "--work_dir", str(tmp_path / "q"), "--output_dir",
                        str(tmp_path / "g")], re.escape(str(missing))),
        "push": (["--model", str(tmp_path / "nowhere"), "--repo_id", "org/x"], "is not a folder"),
        "serve": (["--model", str(tmp_path / "nowhere"), "--port", "0"], "neither a checkpoint folder nor a Hub repo"),
    }


def test_every_subcommand_reports_a_bad_input_in_one_line(tmp_path, capsys, prepared, tokenizer, checkpoint) -> None:
    cases = _bad_inputs(tmp_path, prepared, tokenizer, checkpoint)
    assert set(cases) == set(COMMANDS)  # a new command needs its bad-input case here
    before = sorted(p.name for p in checkpoint.iterdir())
    for command, (argv, message) in cases.items():
        _fails(capsys, [command, *argv], message)
    assert sorted(p.name for p in checkpoint.iterdir()) == before  # nothing written beside the model
    assert not any(p.name in ("p", "t", "q", "g") for p in tmp_path.iterdir())  # no partial output


def test_ranking_settings_without_the_ranking_selection_are_refused(tmp_path, capsys, prepared, tokenizer) -> None:
    out = tmp_path / "run"
    _fails(capsys, ["train", "--data", str(prepared), "--tokenizer", str(tokenizer), "--output_dir", str(out),
                    "--ranking_cases", "50"], r"ranking_cases: only the ranking selection reads it; set select_by='ndcg'")
    assert not out.exists()  # refused before anything was written


def test_debug_shows_the_traceback(capsys, checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="unknown to .*--skip_unknown"):
        main(["recommend", "--debug", "--model", str(checkpoint), "--history", "click:not-an-item"])


def test_a_broken_recipe_is_one_line(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: [unclosed\n")
    _fails(capsys, ["train", "--config", str(recipe)], "not valid YAML")
    _fails(capsys, ["train", "--config", str(tmp_path / "none.yaml")], "recipe file not found")


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_loader_refuses_broken_checkpoints(broken_checkpoints: dict[str, Path], broken: str) -> None:
    with pytest.raises(CheckpointError, match=BROKEN[broken][1]):
        load_checkpoint(broken_checkpoints[broken])


def test_loader_accepts_the_good_checkpoint_and_old_ones_without_a_digest(checkpoint: Path, tmp_path: Path,
                                                                          caplog) -> None:
    model, tokenizer = load_checkpoint(checkpoint)
    assert not model.training and len(tokenizer.item_index) > 0
    old = shutil.copytree(checkpoint, tmp_path / "old", ignore=shutil.ignore_patterns("checkpoints"))
    (old / "gamer_checksums.json").unlink()
    with caplog.at_level(logging.WARNING, logger="gamer_hf.checkpoint"):  # other tests quiet "gamer_hf"
        load_checkpoint(old)
    assert "without a corruption check" in caplog.text


@pytest.mark.parametrize("broken", sorted(BROKEN))
@pytest.mark.parametrize("command", ["recommend", "train", "evaluate", "push", "serve"])
def test_every_loading_command_refuses_broken_checkpoints(broken_checkpoints, broken, command, prepared, tmp_path,
                                                          capsys, monkeypatch) -> None:
    folder = broken_checkpoints[broken]
    monkeypatch.setenv("HF_ENDPOINT", DEAD_HUB)  # push must refuse before it contacts any Hub
    before = sorted(p.name for p in folder.iterdir())
    argv = {
        "recommend": ["--model", str(folder), "--history", "click:x"],
        "train": ["--data", str(prepared), "--init_from", str(folder), "--output_dir", str(tmp_path / "tuned"),
                  "--max_steps", "1"],
        "evaluate": ["--model", str(folder), "--data", str(prepared), "--max_cases", "4"],
        "push": ["--model", str(folder), "--repo_id", "org/broken"],
        "serve": ["--model", str(folder), "--port", "0"],  # refused before the port opens
    }[command]
    line = _fails(capsys, [command, *argv], BROKEN[broken][1])
    assert str(folder) in line
    assert sorted(p.name for p in folder.iterdir()) == before and not (tmp_path / "tuned").exists()


def test_recommend_names_unknown_entries_and_the_flag_that_skips_them(checkpoint, capsys):
    assert main(["recommend", "--model", str(checkpoint), "--history", "click:no-such-item"]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error) == 1 and "click:no-such-item" in error[0] and "--skip_unknown" in error[0]
    assert main(["recommend", "--model", str(checkpoint), "--history", "click:no-such-item,like:x",
                 "--skip_unknown", "--json"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 unknown history entries" in captured.err and "empty history" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["items"]


def test_recommend_max_history_keeps_the_most_recent_interactions(checkpoint, capsys):
    from gamer_hf.loading import load_gamer

    _, tokenizer = load_gamer(checkpoint)
    first, last = list(tokenizer.item_ids)[:2]
    behavior = next(iter(tokenizer.behaviors))

    def recommend(history: str, *flags: str) -> list:
        assert main(["recommend", "--model", str(checkpoint), "--history", history, "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["items"]

    assert recommend(f"{behavior}:{first},{behavior}:{last}", "--max_history", "1") == recommend(f"{behavior}:{last}")
    for bad in ("0", "-3"):
        line = _fails(capsys, ["recommend", "--model", str(checkpoint), "--history", f"{behavior}:{last}",
                               "--max_history", bad], "max_history")
        assert bad in line
