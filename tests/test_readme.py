"""The README's tour, run as written on a small shop log (speed flags appended where noted)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gamer_hf.data.synthetic import generate_synthetic

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
# Appended to keep the suite fast; everything else is the README's own text.
SPEED_FLAGS = {
    "train": ["--preset", "tiny", "--num_train_epochs", "1"],
    "evaluate": ["--max_cases", "40"],
}


def _block(heading: str, language: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def _commands() -> list[list[str]]:
    lines = [line for line in _block("## Tour", "bash").splitlines() if line and not line.startswith("#")]
    return [shlex.split(line) for line in lines]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """events.csv.gz in the canonical layout, with item ids sku1, sku2, ... as the tour uses them."""
    folder = tmp_path_factory.mktemp("readme")
    events, _ = generate_synthetic(num_users=150, num_items=80, seed=3)
    ids = {item: f"sku{n}" for n, item in enumerate(sorted(events["item_id"].unique(), key=int), start=1)}
    events["item_id"] = events["item_id"].map(ids)
    events.to_csv(folder / "events.csv.gz", index=False)
    (folder / "recipes").symlink_to(ROOT / "recipes")
    return folder


def _run(argv: list[str], cwd: Path) -> str:
    if argv[0] == "gamer-hf":
        argv = [str(BIN / "gamer-hf"), *argv[1:], *SPEED_FLAGS.get(argv[1], [])]
    elif argv[:2] == ["accelerate", "launch"]:
        argv = [str(BIN / "accelerate"), *argv[1:], *SPEED_FLAGS["train"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_tour_commands_and_python_snippet_run(workspace: Path) -> None:
    commands = _commands()
    assert [c[1] if c[0] == "gamer-hf" else c[0] for c in commands] == [
        "prepare", "semantic-ids", "train", "evaluate", "recommend", "accelerate",
    ]
    outputs = [_run(command, workspace) for command in commands]
    assert "top-10 under 'buy'" in outputs[4]
    assert "| MostPopular |" in outputs[3] and "| Repeat |" in outputs[3]
    for folder in ("data", "tokenizer", "gamer", "gamer_ddp"):
        assert (workspace / folder).is_dir()
    snippet = _block("## Tour", "python")
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        exec(compile(snippet, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    recs, items = namespace["recs"], namespace["items"]
    assert len(recs) == 1 and len(recs[0]) == 10
    tokenizer = namespace["tokenizer"]
    assert all(item in tokenizer.item_index for item, _ in recs[0])
    [scored] = namespace["scores"]
    assert len(scored) == 2 and all(score < 0 for score in scored)
    report = namespace["report"]
    assert report["GAMER+rerank"].num_cases and namespace["reranker"].weights["fit_cases"] > 0
    assert len(items) == 20 and all(item in tokenizer.item_index for item in items)
    top5 = namespace["top5"]
    assert [row["item_id"] for row in top5] == [item for item, _ in model_recs(namespace)[:5]]


def model_recs(namespace: dict) -> list:
    """What the pipeline must agree with: the model's own recommend() for the same history."""
    model, tokenizer = namespace["model"], namespace["tokenizer"]
    return model.recommend(tokenizer, [[("click", "sku1"), ("cart", "sku2")]], behavior="buy", top_k=5, num_beams=20)[0]


def test_make_targets_and_ci_entry_point() -> None:
    """The two set-up commands the README opens with exist, and CI runs `make test`."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^quickstart:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make quickstart" in README.split("##")[0] and "make test" in README.split("##")[0]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
