"""The package's file primitives: atomic writes of files and folders, and the one JSON reader.

Every output a user might rely on (reports, tokenizers, published models) is written under a
temporary name beside its destination and renamed into place, so a reader or a crash sees the old
content or the complete new one, never half of it. Every JSON file gamer_hf reads goes through
`read_json`, so a corrupt one is named in a one-line error instead of a `JSONDecodeError`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import CheckpointError, GamerError, OutputExistsError

__all__ = ["atomic_directory", "atomic_output", "ordinary_permissions", "read_json", "replace_directory"]

_REQUIRED = object()


def read_json(path: str | os.PathLike, default: Any = _REQUIRED, *, error: type[GamerError] = CheckpointError) -> Any:
    """The parsed content of `path`; `default` when it is missing (given), else `error` naming the file.

    A file that is not UTF-8 JSON always raises `error` with the parser's position, so the user
    knows which file to regenerate.
    """
    path = Path(path)
    if not path.is_file():
        if default is not _REQUIRED:
            return default
        raise error(f"{path} is missing; {path.parent} is incomplete")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path} is corrupt: not valid JSON ({problem}); restore or regenerate it") from None


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path`, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; the result is an ordinary file
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def ordinary_permissions(folder: Path) -> None:
    """Give `folder` and its files the permissions of the process umask (temp files are created 0600/0700)."""
    umask = _umask()
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def replace_directory(new: Path, out: Path) -> None:
    """Put the complete folder `new` at `out`, replacing what is there with two renames (never a mix of both)."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old)  # `old` is empty, so the rename may replace it
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir that replaces `out_dir` when the block succeeds (and vanishes otherwise).

    Refuses an existing non-empty `out_dir` unless `overwrite=True`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} exists and is not a directory; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output directory {out} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; give the final dir ordinary permissions
        replace_directory(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
