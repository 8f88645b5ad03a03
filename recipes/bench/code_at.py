"""The code of an earlier commit, importable beside today's, and the rounds the A/B benchmarks run it in: each round
runs every code once in a fresh process (`child_env` puts a commit's package first on its path), the order rotated
round by round (`round_order`). data_pipeline.py (prepare and collation) and train_stream.py (training memory) share
them, so their tables read alike: a ratio within a round, median and range over rounds."""

from __future__ import annotations

import atexit
import importlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def model_code_at(commit: str) -> ModuleType:
    """`modeling/` as it was at `commit`, written out by `git show` and imported as its own package
    (`gamer_<commit>`), so the old model runs beside today's in one process."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", f"{commit}:modeling"],
                           check=True, capture_output=True, text=True).stdout.split()
    root = Path(tempfile.mkdtemp(prefix="gamer_parity_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    package = root / f"gamer_{commit[:7]}"
    package.mkdir()
    for name in files:
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:modeling/{name}"], check=True,
                                capture_output=True, text=True).stdout
        (package / name).write_text(source)
    sys.path.insert(0, str(root))
    return importlib.import_module(package.name)


def package_at(commit: str, into: Path) -> Path:
    """A folder to put first on a child process's PYTHONPATH whose `gamer_hf` is `commit`'s package, with its
    `modeling/` and `hub_cards/` inside it as setup.py installs them. Extracting `modeling/` beside `gamer_hf` is
    not enough: `gamer_hf.modeling` would then resolve through the editable install to today's model code."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "gamer_hf", "modeling", "hub_cards"],
                             capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    for name in ("modeling", "hub_cards"):
        (into / name).rename(into / "gamer_hf" / name)
    return into


THIS_TREE = "this tree"  # the code of the checkout the benchmark runs from: nothing put first on the path


def packages(commits: Mapping[str, str], into: Path) -> dict[str, Path | None]:
    """Each named commit's package (`package_at`, extracted once into `into/code_<commit>` and reused from there),
    then this tree's (None), in that order: the codes of an A/B benchmark."""
    codes: dict[str, Path | None] = {}
    for name, commit in commits.items():
        folder = into / f"code_{commit}"
        codes[name] = folder if (folder / "gamer_hf").is_dir() else package_at(commit, folder)
    return codes | {THIS_TREE: None}


def round_order(codes: Sequence[T], repeat: int) -> list[T]:
    """The codes in round `repeat`'s order: each once, rotated one place a round, so that each goes first as often as
    the others (two codes alternate). The machine is shared: the ratio within a round is what counts."""
    shift = repeat % len(codes)
    return [*codes[shift:], *codes[:shift]]


def child_env(package: Path | None) -> dict[str, str]:
    """What to add to a fresh process's environment so that it imports `package`'s gamer_hf (nothing for this tree)."""
    return {"PYTHONPATH": str(package.resolve())} if package is not None else {}
