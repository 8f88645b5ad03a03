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

from gamer_hf import checkpoint
from gamer_hf.data.collator import catalogue_rows
from gamer_hf.errors import DataError
from gamer_hf.modeling import GamerConfig, GamerForCausalLM, GamerTokenizerFast

from .arguments import ABLATIONS, TrainArguments

__all__ = ["build_model", "check_data", "load_tokenizer", "tokenizer_dir"]

logger = logging.getLogger(__name__)

DROPOUT_FIELDS = ("hidden_dropout", "attention_dropout", "ffn_dropout")  # what TrainArguments.dropout sets


def tokenizer_dir(args: TrainArguments) -> Path:
    """The explicit tokenizer, else the tokenizer saved with the checkpoint being fine-tuned."""
    return Path(args.tokenizer if args.tokenizer is not None else args.init_from)


def load_tokenizer(args: TrainArguments) -> GamerTokenizerFast:
    return checkpoint.load_tokenizer(tokenizer_dir(args))


def check_data(tokenizer: GamerTokenizerFast, metadata: dict[str, Any], item_ids: Sequence[str], data: str,
               on_unknown: str, item_rows: np.ndarray | None = None) -> int:
    """Refuse data the tokenizer cannot encode; return how many catalogue items it does not know. `item_rows`:
    `catalogue_rows(tokenizer, item_ids)` where the caller has it already (the collator's), else looked up here."""
    for name, level in metadata["behaviors"].items():
        if name not in tokenizer.behaviors:
            raise DataError(f"{data}: behavior {name!r} is not in the tokenizer's behaviors "
                             f"{list(tokenizer.behaviors)}")
        if tokenizer.behaviors[name] != level:
            raise DataError(f"{data}: behavior {name!r} has level {level} but the tokenizer gives it "
                             f"{tokenizer.behaviors[name]}; build the tokenizer from this data")
    rows = catalogue_rows(tokenizer, item_ids) if item_rows is None else item_rows
    missing = np.flatnonzero(rows < 0)
    unknown, first = len(missing), [str(item_ids[int(number)]) for number in missing[:5]]
    if unknown and on_unknown == "raise":
        raise DataError(f"{data}: {unknown} of {len(item_ids)} items have no semantic ID in the tokenizer "
                         f"(first: {first}); build semantic IDs for this data, or pass on_unknown=skip")
    if unknown:
        logger.warning("%d of %d items of %s have no semantic ID; their interactions are skipped",
                       unknown, len(item_ids), data)
    return unknown


def build_model(args: TrainArguments, tokenizer: GamerTokenizerFast, augmented: bool) -> GamerForCausalLM:
    """A fresh model of the preset (with the ablation and `dropout` applied), or the `init_from` checkpoint.

    `augmented` records whether the training data carries augmented views (config.use_augmentation).
    """
    if args.init_from is not None:  # the one verified loader: every tensor present, finite and unchanged
        model, _ = checkpoint.load_checkpoint(args.init_from, tokenizer=tokenizer)
    else:
        rates = {} if args.dropout is None else dict.fromkeys(DROPOUT_FIELDS, args.dropout)
        config = GamerConfig.from_preset(args.preset_name, tokenizer=tokenizer, **ABLATIONS[args.ablation], **rates)
        model = GamerForCausalLM(config)
        if args.ablation == "tiger" and augmented:
            logger.warning("ablation=tiger on augmented data: a faithful TIGER baseline is trained on data "
                           "prepared with augment_copies=0")
    model.config.use_augmentation = augmented
    return model
