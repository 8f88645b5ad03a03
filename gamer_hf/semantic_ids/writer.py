"""Write semantic IDs as a GamerTokenizerFast directory, atomically.

The directory is assembled under a temporary name next to its destination and renamed into place,
so a crash never leaves a half-written tokenizer that training would silently pick up.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .build import SemanticIds

__all__ = ["REPORT_FILENAME", "atomic_directory", "save_semantic_ids"]

REPORT_FILENAME = "semantic_ids_report.json"


@contextmanager
def atomic_directory(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir that replaces `out_dir` when the block succeeds (and vanishes otherwise).

    Refuses an existing non-empty `out_dir` unless `overwrite=True`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output directory {out} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; give the final dir ordinary permissions
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old)  # `old` is empty, so the rename may replace it
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_semantic_ids(
    semantic_ids: SemanticIds,
    out_dir: str | os.PathLike,
    *,
    behaviors: Mapping[str, int],
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
):
    """Save a tokenizer built from `semantic_ids` plus `semantic_ids_report.json`; return the tokenizer.

    `behaviors` maps behavior name -> level in identity order (lowest intent first). `metadata`
    (e.g. embedding kind, data source) is stored in the report file next to method, parameters
    and the report itself.
    """
    from gamer_hf.modeling.tokenization_gamer import GamerTokenizerFast

    tokenizer = GamerTokenizerFast.from_items(
        semantic_ids.item_index, behaviors=dict(behaviors), codebook_size=list(semantic_ids.codebook_sizes)
    )
    payload = {
        "method": semantic_ids.report.method,
        "parameters": semantic_ids.parameters,
        "report": semantic_ids.report.to_dict(),
        **dict(metadata or {}),
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        tokenizer.save_pretrained(str(tmp))
        (tmp / REPORT_FILENAME).write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return tokenizer
