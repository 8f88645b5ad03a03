"""gamer_hf.files: the one JSON reader names the broken file; atomic writes leave the old content or the
complete new one, with the permissions of the process umask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gamer_hf.errors import CheckpointError, DataError, OutputExistsError
from gamer_hf.files import atomic_directory, atomic_output, read_json, replace_directory


def test_read_json_names_missing_and_corrupt_files(tmp_path: Path) -> None:
    path = tmp_path / "item_index.json"
    with pytest.raises(CheckpointError, match=f"{path} is missing"):
        read_json(path)
    assert read_json(path, None) is None
    path.write_text('{"a": [1, 2')
    with pytest.raises(DataError, match=rf"{path} is corrupt: not valid JSON \(.*line 1"):
        read_json(path, None, error=DataError)  # a default covers only a missing file
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_json(path)
    path.write_text('{"a": 1}')
    assert read_json(path) == {"a": 1}


def test_atomic_output_has_umask_permissions_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with atomic_output(target) as temporary:
        temporary.write_text("new")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_replace_directory_swaps_whole_folders(tmp_path: Path) -> None:
    out, new = tmp_path / "model", tmp_path / "staging"
    out.mkdir()
    (out / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_directory(new, out)
    assert [p.name for p in out.iterdir()] == ["new.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_directory_refuses_to_clobber(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a directory"), atomic_directory(tmp_path / "file"):
        pass
    assert isinstance(OutputExistsError("x"), FileExistsError)  # callers catching the builtin keep working
