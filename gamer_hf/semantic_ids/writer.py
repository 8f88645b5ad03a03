"""Write semantic IDs as a GamerTokenizerFast directory, atomically.

The directory is assembled under a temporary name next to its destination and renamed into place,
so a crash never leaves a half-written tokenizer that training would silently pick up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..files import atomic_directory
from .build import SemanticIds

__all__ = ["REPORT_FILENAME", "atomic_directory", "save_semantic_ids"]

REPORT_FILENAME = "semantic_ids_report.json"


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
