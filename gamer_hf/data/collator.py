"""Batches of prepared rows for the model: right-padded input_ids, attention_mask and labels.

Training rows (`behaviors`, `items`) become `[beh, c1..cK]` per interaction with every code token
scored (full-sequence LM loss). Validation/test rows (`history_*`, `target_behavior`,
`target_items`) become one sequence per target item: the history, the requested behavior token,
then the target item's codes, with labels only on those codes, so the Trainer's eval loss scores
exactly the held-out targets. Use `remove_unused_columns=False` in TrainingArguments so the
Trainer hands these columns to the collator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch

__all__ = ["GamerCollator"]

IGNORE_INDEX = -100


class GamerCollator:
    """Collate training or evaluation rows (or a mix) into right-padded tensors.

    `max_history` trims training rows to their last max_history + 1 interactions and prompts to
    their last max_history; `on_unknown="skip"` drops interactions and targets the tokenizer's item
    index does not know (e.g. items without semantic IDs) instead of raising.
    """

    def __init__(
        self,
        tokenizer: Any,
        max_history: int | None = None,
        on_unknown: str = "raise",
        pad_to_multiple_of: int | None = None,
    ) -> None:
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        self.tokenizer, self.max_history, self.on_unknown = tokenizer, max_history, on_unknown
        self.pad_to_multiple_of = pad_to_multiple_of

    def _training(self, row: Mapping[str, Any]) -> list[tuple[list[int], int]]:
        pairs = list(zip(row["behaviors"], row["items"]))
        if self.max_history is not None:
            pairs = pairs[-(self.max_history + 1):]
        ids = self.tokenizer.encode_interactions(pairs, on_unknown=self.on_unknown)
        return [(ids, 0)] if ids else []

    def _evaluation(self, row: Mapping[str, Any]) -> list[tuple[list[int], int]]:
        history = list(zip(row["history_behaviors"], row["history_items"]))
        if self.max_history is not None:
            history = history[len(history) - min(len(history), self.max_history):]
        prompt = self.tokenizer.encode_interactions(history, on_unknown=self.on_unknown)
        prompt.append(self.tokenizer.behavior_token_id(row["target_behavior"]))
        examples = []
        for item in row["target_items"]:
            if self.on_unknown == "skip" and str(item) not in self.tokenizer.item_index:
                continue
            codes = self.tokenizer.item_token_ids(item)
            examples.append((prompt + codes, len(prompt)))
        return examples

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        examples: list[tuple[list[int], int]] = []  # (token ids, first position whose label counts)
        for row in rows:
            if "items" in row:
                examples.extend(self._training(row))
            elif "target_items" in row:
                examples.extend(self._evaluation(row))
            else:
                raise ValueError(f"row has neither training nor evaluation columns: {sorted(row)}")
        if not examples:
            raise ValueError("no example left in this batch (all interactions unknown to the tokenizer?)")
        lengths = np.array([len(ids) for ids, _ in examples])
        width = int(lengths.max())
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        columns = np.arange(width)
        filled = columns < lengths[:, None]  # right padding: tokens first, pads after
        ids = np.full((len(examples), width), self.tokenizer.pad_token_id, dtype=np.int64)
        ids[filled] = np.fromiter(chain.from_iterable(ids for ids, _ in examples), dtype=np.int64,
                                  count=int(lengths.sum()))
        scored = filled & (columns >= np.array([first for _, first in examples])[:, None])
        # numpy for the arithmetic: tiny torch ops stall when the intra-op pool competes for busy cores
        input_ids = torch.from_numpy(ids)
        code = self.tokenizer.code_token_mask(input_ids).numpy()
        labels = np.where(scored & code, ids, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": torch.from_numpy(filled.astype(np.int64)),
                "labels": torch.from_numpy(labels)}
