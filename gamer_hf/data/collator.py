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
from typing import Any

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
        width = max(len(ids) for ids, _ in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(examples), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        scored = torch.zeros((len(examples), width), dtype=torch.bool)
        for i, (ids, first_scored) in enumerate(examples):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            scored[i, first_scored: len(ids)] = True
        keep = scored & self.tokenizer.code_token_mask(input_ids) & attention_mask.bool()
        labels = torch.where(keep, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
