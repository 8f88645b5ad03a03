"""The tokenizer and model a run starts from, and the checks that they fit the prepared data.

Mismatches (behaviors with other levels, items without semantic IDs, a tokenizer whose layout is
not the checkpoint's) are refused here with the offending names, before any step is taken,
rather than surfacing as an index error or a collator failure in the middle of an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gamer_hf import checkpoint
from gamer_hf.data.id_lists import string_buffers
from gamer_hf.data.prepare import LazyIds
from gamer_hf.errors import DataError
from gamer_hf.modeling import GamerConfig, GamerForCausalLM, GamerTokenizerFast

from .arguments import ABLATIONS, TrainArguments

__all__ = ["build_model", "check_data", "load_tokenizer", "tokenizer_dir"]

logger = logging.getLogger(__name__)


def tokenizer_dir(args: TrainArguments) -> Path:
    """The explicit tokenizer, else the tokenizer saved with the checkpoint being fine-tuned."""
    return Path(args.tokenizer if args.tokenizer is not None else args.init_from)


def load_tokenizer(args: TrainArguments) -> GamerTokenizerFast:
    return checkpoint.load_tokenizer(tokenizer_dir(args))


CHECK_CHUNK = 1 << 18  # catalogue ids looked up at once by check_data


def check_data(tokenizer: GamerTokenizerFast, metadata: dict[str, Any], item_ids: Sequence[str], data: str,
               on_unknown: str) -> int:
    """Refuse data the tokenizer cannot encode; return how many catalogue items it does not know."""
    for name, level in metadata["behaviors"].items():
        if name not in tokenizer.behaviors:
            raise DataError(f"{data}: behavior {name!r} is not in the tokenizer's behaviors "
                             f"{list(tokenizer.behaviors)}")
        if tokenizer.behaviors[name] != level:
            raise DataError(f"{data}: behavior {name!r} has level {level} but the tokenizer gives it "
                             f"{tokenizer.behaviors[name]}; build the tokenizer from this data")
    unknown, first = 0, []
    ids = item_ids.ids if isinstance(item_ids, LazyIds) else None  # Arrow ids are searched in their buffers
    for start in range(0, len(item_ids), CHECK_CHUNK):  # slices bound the lookup's temporaries at 4M items
        chunk = (ids.slice(start, CHECK_CHUNK) if ids is not None else
                 pa.array([str(item) for item in item_ids[start:start + CHECK_CHUNK]], pa.string()))
        missing = np.flatnonzero(tokenizer.item_index.rows_of_buffer(*string_buffers(chunk)) < 0)
        first += chunk.take(missing[:5 - len(first)]).to_pylist()
        unknown += len(missing)
    if unknown and on_unknown == "raise":
        raise DataError(f"{data}: {unknown} of {len(item_ids)} items have no semantic ID in the tokenizer "
                         f"(first: {first}); build semantic IDs for this data, or pass on_unknown=skip")
    if unknown:
        logger.warning("%d of %d items of %s have no semantic ID; their interactions are skipped",
                       unknown, len(item_ids), data)
    return unknown


def build_model(args: TrainArguments, tokenizer: GamerTokenizerFast, augmented: bool) -> GamerForCausalLM:
    """A fresh model of the preset (with the ablation applied), or the `init_from` checkpoint.

    `augmented` records whether the training data carries augmented views (config.use_augmentation).
    """
    if args.init_from is not None:  # the one verified loader: every tensor present, finite and unchanged
        model, _ = checkpoint.load_checkpoint(args.init_from, tokenizer=tokenizer)
    else:
        config = GamerConfig.from_preset(args.preset_name, tokenizer=tokenizer, **ABLATIONS[args.ablation])
        model = GamerForCausalLM(config)
        if args.ablation == "tiger" and augmented:
            logger.warning("ablation=tiger on augmented data: a faithful TIGER baseline is trained on data "
                           "prepared with augment_copies=0")
    model.config.use_augmentation = augmented
    return model
