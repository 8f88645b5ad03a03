"""Shared fixtures: the real-data folder (skipped cleanly without it) and small synthetic inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: longer end-to-end tests (still part of make test)")
    config.addinivalue_line("markers", "realdata: needs GAMER_HF_DATA_DIR")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the shared real datasets; tests that need it skip with a reason when it is unset."""
    value = os.environ.get("GAMER_HF_DATA_DIR")
    if not value:
        pytest.skip("GAMER_HF_DATA_DIR is not set: real-data test skipped (CI sets it to ../shared/data)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"GAMER_HF_DATA_DIR={value} is not a directory")
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the suite (as `make test` sets OMP_NUM_THREADS=1), restored afterwards:
    on two shared cores a second thread only spins (tiny training steps ran 10x slower under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def bench_script():
    """Load a script of recipes/bench by file name as a module (they are scripts, not a package)."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parents[1] / "recipes" / "bench"
    if str(folder) not in sys.path:  # as when run: a script's folder is first on its path (code_at, siblings)
        sys.path.insert(0, str(folder))

    def load(file: str):
        name = f"bench_{Path(file).stem}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, folder / file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    return load


# Prefix of a script run as a user who never installed gamer_hf: importing it fails from the first line.
WITHOUT_GAMER_HF = r"""
import sys
sys.modules["gamer_hf"] = None
try:
    import gamer_hf  # noqa: F401
    raise SystemExit("gamer_hf should not be importable here")
except ImportError:
    pass
"""


@pytest.fixture
def run_without_gamer_hf(tmp_path: Path) -> Callable[..., Any]:
    """Run `script` (given `args` as sys.argv[1:]) where gamer_hf cannot be imported, offline and with an empty
    HF_HOME; returns the JSON the script printed on its last line."""

    def run(script: str, *args: str) -> Any:
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_GAMER_HF + script, *args],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1",
                 "OMP_NUM_THREADS": "1"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run
