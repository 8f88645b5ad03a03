"""Integer ids for items and behaviors, and the padded tensors the SASRec baselines read.

Id 0 is padding and id 1 stands for items the catalogue does not know (an item first seen after
fitting): they keep their place in the sequence, so positions stay honest, but can never be
recommended. Sequences are right-padded: with a causal mask no real position ever attends to a pad,
so no padding mask is needed and the last real position is simply `length - 1`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["PAD", "UNKNOWN", "NUM_SPECIAL", "ItemVocabulary", "SequenceBatch"]

PAD = 0
UNKNOWN = 1
NUM_SPECIAL = 2


@dataclass
class SequenceBatch:
    """Right-padded [batch, length] tensors; `lengths` counts the real positions of every row."""

    items: torch.Tensor
    behaviors: torch.Tensor
    lengths: torch.Tensor

    def to(self, device: torch.device | str) -> "SequenceBatch":
        return SequenceBatch(self.items.to(device), self.behaviors.to(device), self.lengths.to(device))


class ItemVocabulary:
    """Item id (str) <-> row of the output layer, and behavior name <-> identity (1..B, 0 = pad)."""

    def __init__(self, item_ids: Sequence[str], behaviors: Mapping[str, int]) -> None:
        ids = [str(item) for item in item_ids]
        if not ids:
            raise ValueError("the item catalogue is empty: a recommender needs at least one item")
        if len(set(ids)) != len(ids):
            duplicate = next(item for item in ids if ids.count(item) > 1)
            raise ValueError(f"item id {duplicate!r} appears more than once in the catalogue")
        if not behaviors:
            raise ValueError("the behavior table is empty: give a mapping name -> level")
        self.item_ids = ids
        self.item_index = {item: NUM_SPECIAL + i for i, item in enumerate(ids)}
        self.behaviors = dict(behaviors)
        self.behavior_index = {name: i + 1 for i, name in enumerate(self.behaviors)}

    @property
    def num_items(self) -> int:
        """Rows of the item embedding, specials included."""
        return NUM_SPECIAL + len(self.item_ids)

    @property
    def num_behaviors(self) -> int:
        """Rows of a behavior embedding, the pad row included."""
        return 1 + len(self.behaviors)

    def item(self, item_id: str) -> int:
        return self.item_index.get(str(item_id), UNKNOWN)

    def behavior(self, name: str) -> int:
        try:
            return self.behavior_index[name]
        except KeyError:
            raise ValueError(f"unknown behavior {name!r}; the model knows {list(self.behavior_index)}") from None

    def decode(self, rows: Sequence[int]) -> list[str]:
        """Output rows (never specials) -> item ids."""
        return [self.item_ids[row - NUM_SPECIAL] for row in rows]

    def encode(self, sequences: Sequence[tuple[Sequence[str], Sequence[str]]], max_length: int) -> SequenceBatch:
        """(behaviors, items) pairs of lists -> the last `max_length` interactions of each, right-padded.

        An empty sequence becomes a single unknown item, so every row has a last position to read.
        """
        width = max(1, min(max_length, max((len(items) for _, items in sequences), default=1)))
        items = torch.full((len(sequences), width), PAD, dtype=torch.long)
        behaviors = torch.full((len(sequences), width), PAD, dtype=torch.long)
        lengths = torch.ones(len(sequences), dtype=torch.long)
        for row, (names, ids) in enumerate(sequences):
            if len(names) != len(ids):
                raise ValueError(f"sequence {row}: {len(names)} behaviors for {len(ids)} items")
            start = max(0, len(ids) - max_length)
            tail = list(zip(names[start:], ids[start:]))
            if not tail:
                items[row, 0] = UNKNOWN
                continue
            items[row, : len(tail)] = torch.tensor([self.item(i) for _, i in tail])
            behaviors[row, : len(tail)] = torch.tensor([self.behavior(b) for b, _ in tail])
            lengths[row] = len(tail)
        return SequenceBatch(items, behaviors, lengths)
