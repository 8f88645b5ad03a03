"""The benchmark scripts answer a setting the user can fix as `gamer-hf` does: a line `SCRIPT: error: ...` naming
what to set (after the usage, where argparse refuses it), exit 2, before any of the work that would have run ahead of
the check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gamer_hf.errors import ConfigurationError, exit_on_user_error


def _refused(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    error = capsys.readouterr().err
    assert stopped.value.code == 2, error
    return error.splitlines()[-1]


def _no_work(*args, **kwargs):
    pytest.fail("the script started its work before refusing the setting")


@pytest.mark.parametrize(("script", "argv", "stubbed", "message"), [
    ("speed.py", ["--sections", "train", "parity"], "train_throughput", "give --data-dir or set GAMER_HF_DATA_DIR"),
    ("serve_load.py", ["--work", "{tmp}/work"], "run_level", "give --data-dir or set GAMER_HF_DATA_DIR"),
    ("serve_load.py", ["--work", "{tmp}/work", "--data-dir", "{tmp}/none"], "run_level", "none/retailrocket_cml/events.csv.gz"),
    ("serve_profile.py", ["--work", "{tmp}/work", "--rate", "50"], "build_checkpoint", "pip install py-spy (or --rate 0)"),
    ("serve_profile.py", ["--work", "{tmp}/work", "--sweep"], "request_bodies", "give --data-dir or set GAMER_HF_DATA_DIR"),
])
def test_a_missing_setting_is_one_line_and_exit_2(bench_script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], script: str, argv: list[str],
                                                  stubbed: str, message: str) -> None:
    module = bench_script(script)
    monkeypatch.delenv("GAMER_HF_DATA_DIR", raising=False)
    monkeypatch.setattr(module, stubbed, _no_work)  # what would run after the check (speed.py: the train section)
    monkeypatch.setattr(module, "in_fresh_process", lambda function, *args: function(*args), raising=False)
    if script == "serve_profile.py":
        monkeypatch.setattr(module, "find_py_spy", lambda: None)
    error = _refused(module.main, [arg.format(tmp=tmp_path) for arg in argv], capsys)
    program, _, text = error.partition(": error: ")  # argparse names the program after sys.argv[0]
    assert program in (script, Path(sys.argv[0]).name) and message in text


def test_exit_on_user_error_keeps_a_bugs_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped, exit_on_user_error("tool"):
        raise ConfigurationError("a message\nover two lines")
    assert stopped.value.code == 2 and capsys.readouterr().err == "tool: error: a message over two lines\n"
    with pytest.raises(KeyError), exit_on_user_error("tool"):  # not the user's: the traceback stays
        raise KeyError("bug")
