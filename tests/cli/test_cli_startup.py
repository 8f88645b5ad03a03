"""`gamer-hf --help` answers from the console-script module alone: no torch, no transformers, no
gamer_hf package import (which registers the Auto classes and so imports both); `gamer-hf recommend`
imports the model stack only, and prints no progress bar."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.numpy import load_file

import gamer_hf_entry

PROBE = """
import sys
import gamer_hf_entry
code = gamer_hf_entry.main({argv!r})
print('LOADED', sorted({{'torch', 'transformers', 'gamer_hf'}} & set(sys.modules)), code)
"""


# What `recommend` must not import: the data, training, evaluation and serving stacks and their libraries.
HEAVY = ("pandas", "pyarrow", "datasets", "sklearn", "matplotlib", "duckdb", "evaluate", "fastapi", "uvicorn",
         "sentence_transformers", "gamer_hf.data", "gamer_hf.training", "gamer_hf.evaluation", "gamer_hf.semantic_ids",
         "gamer_hf.baselines", "gamer_hf.hub", "gamer_hf.serve")
RECOMMEND_PROBE = """
import sys
import gamer_hf_entry
code = gamer_hf_entry.main({argv!r})
print('HEAVY', sorted(name for name in {heavy!r} if name in sys.modules), code)
"""


def test_recommend_imports_the_model_stack_only_and_prints_no_bar(checkpoint: Path) -> None:
    ids = load_file(checkpoint / "item_index.safetensors")["item_ids"].tobytes().decode().split("\0")
    first, second = ids[:2]
    argv = ["recommend", "--model", str(checkpoint), "--history", f"click:{first},cart:{second}", "--top_k", "3"]
    done = subprocess.run([sys.executable, "-c", RECOMMEND_PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True,
                          text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "top-3 under 'buy'" in done.stdout
    assert done.stdout.splitlines()[-1] == "HEAVY [] 0"
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr


def test_installed_console_script_does_not_import_torch() -> None:
    script = Path(sys.executable).with_name("gamer-hf")  # the script pip wrote from setup.py's entry point
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), "--help"], capture_output=True,
                          text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert "gamer_hf_entry" in imported and "recommend" in done.stdout
    assert not imported & {"torch", "transformers", "gamer_hf"}


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), ([], 2), (["no-such-command"], 2), (["-h", "--debug"], 0)])
def test_answers_without_importing_torch(argv: list[str], code: int) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == f"LOADED [] {code}"
    if code == 0:
        assert all(name in done.stdout for name in gamer_hf_entry.COMMANDS)


def test_a_command_runs_through_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        gamer_hf_entry.main(["recommend", "--help"])
    assert exit_.value.code == 0
    assert "--skip_unknown" in capsys.readouterr().out
