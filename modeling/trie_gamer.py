"""Constrained decoding over the item index.

`ItemTrie` stores the code paths of real items as sorted edge keys and CSR child lists per level,
so every lookup is a batched `searchsorted` / gather: no Python walk per beam, and memory grows
with the number of items, not with the product of the codebook sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

__all__ = ["GamerConstrainedLogitsProcessor", "ItemTrie"]


class ItemTrie:
    """Code paths of the items of a tokenizer's index, one level per semantic-ID position."""

    def __init__(self, codes: torch.Tensor, codebook_sizes: Sequence[int]) -> None:
        codes = codes.long().cpu()
        self.codebook_sizes = list(codebook_sizes)
        self.num_items = codes.shape[0]
        self.edge_keys: list[torch.Tensor] = []  # depth d: sorted parent * C_d + code
        self.child_ptr: list[torch.Tensor] = []  # depth d: CSR offsets into child_codes, per parent node
        self.child_codes: list[torch.Tensor] = []
        nodes = torch.zeros(self.num_items, dtype=torch.long)
        num_nodes = 1
        for depth, size in enumerate(self.codebook_sizes):
            keys, children = torch.unique(nodes * size + codes[:, depth], sorted=True, return_inverse=True)
            parents = keys // size
            counts = torch.bincount(parents, minlength=num_nodes)
            self.edge_keys.append(keys)
            self.child_ptr.append(torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]))
            self.child_codes.append(keys % size)
            nodes, num_nodes = children, keys.numel()
        if num_nodes != self.num_items:
            raise ValueError("the item index maps two items to the same code tuple; semantic IDs must be unique")
        self.leaf_to_item = torch.full((num_nodes,), -1, dtype=torch.long)
        self.leaf_to_item[nodes] = torch.arange(self.num_items)
        self.item_to_leaf = nodes
        self._device_copies: dict[torch.device, ItemTrie] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> "ItemTrie":
        """Built once per tokenizer and item index, then reused by every decode call."""
        cached = tokenizer.__dict__.get("_gamer_item_trie")
        key = (id(tokenizer.item_index), len(tokenizer.item_index))
        if cached is None or cached[0] != key:
            cached = (key, cls(tokenizer.item_code_tensor, tokenizer.codebook_sizes))
            tokenizer.__dict__["_gamer_item_trie"] = cached
        return cached[1]

    def to(self, device: torch.device) -> "ItemTrie":
        device = torch.device(device)
        if device.type == "cpu":
            return self
        if device not in self._device_copies:
            copy = object.__new__(ItemTrie)
            copy.__dict__.update(self.__dict__)
            for name in ("edge_keys", "child_ptr", "child_codes"):
                setattr(copy, name, [t.to(device) for t in getattr(self, name)])
            copy.leaf_to_item, copy.item_to_leaf = self.leaf_to_item.to(device), self.item_to_leaf.to(device)
            copy._device_copies = {}
            self._device_copies[device] = copy
        return self._device_copies[device]

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    def step(self, nodes: torch.Tensor, depth: int, codes: torch.Tensor) -> torch.Tensor:
        """Child node of `nodes` (at `depth`) along `codes`; -1 where the path leaves the index."""
        keys = self.edge_keys[depth]
        query = nodes.clamp(min=0) * self.codebook_sizes[depth] + codes
        idx = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
        found = (keys[idx] == query) & (nodes >= 0) & (codes >= 0) & (codes < self.codebook_sizes[depth])
        return torch.where(found, idx, torch.full_like(idx, -1))

    def items_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Item rows of `[N, K]` code values, -1 for a path no item has (decoding without a dict of tuples)."""
        codes = codes.to(self.leaf_to_item.device)
        if self.num_items == 0:
            return torch.full(codes.shape[:1], -1, dtype=torch.long, device=codes.device)
        nodes = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for depth in range(self.num_levels):
            nodes = self.step(nodes, depth, codes[:, depth])
        return torch.where(nodes >= 0, self.leaf_to_item[nodes.clamp(min=0)], -1)

    def children(self, nodes: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every child of `nodes` (at `depth`) as three flat lists: the node's position in `nodes.reshape(-1)`, the
        child's code and the child node (at `depth + 1`; an item's leaf at the last depth); nothing for -1 nodes."""
        flat = nodes.reshape(-1)
        ptr = self.child_ptr[depth]
        safe = flat.clamp(min=0)
        starts = ptr[safe]
        counts = torch.where(flat >= 0, ptr[safe + 1] - starts, torch.zeros_like(starts))
        rows = torch.repeat_interleave(torch.arange(flat.numel(), device=flat.device), counts)
        within = torch.arange(rows.numel(), device=flat.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        child = starts[rows] + within  # the child lists are the next level's nodes, in order
        return rows, self.child_codes[depth][child], child

    def allowed(self, nodes: torch.Tensor, depth: int) -> torch.Tensor:
        """Boolean [*nodes.shape, C_depth]: which codes continue each node to a real item."""
        rows, codes, _ = self.children(nodes, depth)
        mask = torch.zeros(nodes.numel(), self.codebook_sizes[depth], dtype=torch.bool, device=nodes.device)
        mask[rows, codes] = True
        return mask.view(*nodes.shape, -1)


class GamerConstrainedLogitsProcessor(LogitsProcessor):
    """Lets `model.generate()` emit only code paths of real items, then EOS.

    The path generated so far is read from `input_ids` (the tokens after the last behavior token),
    so the processor is stateless and survives beam reordering.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.trie = ItemTrie.for_tokenizer(tokenizer)
        self.layout = tokenizer.layout
        self.offsets = self.layout.code_token_offsets
        self.eos_token_id = tokenizer.eos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        trie = self.trie.to(scores.device)
        is_behavior = self.layout.is_behavior_token(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # -1: no behavior token in input_ids, as when generate() was given the prompt as inputs_embeds
        marked = torch.where(is_behavior, positions, torch.full_like(positions, -1))
        last_behavior = torch.cat([marked, marked.new_full((marked.shape[0], 1), -1)], dim=1).amax(dim=1)
        generated = input_ids.shape[1] - 1 - last_behavior  # codes since the requested behavior token
        nodes = torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
        for depth in range(min(int(generated.max()), trie.num_levels)):
            token = input_ids.gather(1, (last_behavior + 1 + depth).clamp(max=input_ids.shape[1] - 1)[:, None])[:, 0]
            stepped = trie.step(nodes, depth, token - self.offsets[depth])
            nodes = torch.where(generated > depth, stepped, nodes)
        out = torch.full_like(scores, float("-inf"))
        for depth in range(trie.num_levels):
            rows = (generated == depth).nonzero(as_tuple=True)[0]
            if rows.numel():
                allowed = trie.allowed(nodes[rows], depth)
                start = self.offsets[depth]
                span = scores[rows, start : start + allowed.shape[1]]
                out[rows, start : start + allowed.shape[1]] = span.masked_fill(~allowed, float("-inf"))
        done = (generated >= trie.num_levels).nonzero(as_tuple=True)[0]
        out[done, self.eos_token_id] = scores[done, self.eos_token_id]
        return out
