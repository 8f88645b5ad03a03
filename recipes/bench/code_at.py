"""The code of an earlier commit, importable beside today's: the baseline of the A/B benchmarks."""

from __future__ import annotations

import atexit
import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


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
