"""Semantic-ID tokenizer for GAMER.

The tokenizer owns the item index (item id <-> code tuple) and the behavior table, because both
are needed to turn a user's history into tokens and generated codes back into items, and both
must travel with every checkpoint.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import BatchEncoding, PreTrainedTokenizerFast

from .configuration_gamer import NUM_SPECIAL_TOKENS, GamerVocabLayout, save_with_remote_code
from .item_index_gamer import ItemIds, ItemIndex
from .trie_gamer import ItemTrie

__all__ = ["GamerTokenizerFast"]

ITEM_INDEX_FILE = "item_index.safetensors"
LEGACY_ITEM_INDEX_FILE = "item_index.json"  # what releases before the binary index wrote; still read
SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
assert len(SPECIAL_TOKENS) == NUM_SPECIAL_TOKENS

Interaction = tuple[str, str]  # (behavior, item_id)


def _behavior_token(name: str) -> str:
    return f"<beh_{name}>"


def _code_token(level: int, code: int) -> str:
    return f"<c{level + 1}_{code}>"


class GamerTokenizerFast(PreTrainedTokenizerFast):
    """WordLevel tokenizer over behavior and (level, code) tokens, plus the item index.

    The vocabulary is a pure function of the behavior table and codebook sizes, so it is rebuilt
    on load instead of trusted from `tokenizer.json`; the item index is saved as `item_index.safetensors`
    (see `item_index_gamer.py`), and an older checkpoint's `item_index.json` still loads.
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json", "item_index_file": ITEM_INDEX_FILE,
                         "legacy_item_index_file": LEGACY_ITEM_INDEX_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"
    # There is no slow counterpart: keep "GamerTokenizerFast" as the saved tokenizer_class.
    can_save_slow_tokenizer = False

    def __init__(
        self,
        behaviors: Mapping[str, int] | Sequence[tuple[str, int]] | None = None,
        codebook_sizes: Sequence[int] | None = None,
        item_index: Mapping[str, Sequence[int]] | None = None,
        item_index_file: str | None = None,
        legacy_item_index_file: str | None = None,
        behavior_table: Sequence[Sequence[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        behaviors = behavior_table if behaviors is None else behaviors
        if behaviors is None or codebook_sizes is None:
            raise ValueError("GamerTokenizerFast needs `behaviors` (name -> level) and `codebook_sizes`")
        loaded = item_index is None and item_index_file is not None
        if loaded:
            item_index = ItemIndex.load(item_index_file)
        elif item_index is None and legacy_item_index_file is not None:
            item_index = _read_legacy_item_index(legacy_item_index_file)
        for key in ("tokenizer_file", "tokenizer_object", "vocab", "merges", "pad_token", "eos_token", "unk_token"):
            kwargs.pop(key, None)
        pairs = behaviors.items() if isinstance(behaviors, Mapping) else behaviors
        self.behaviors: dict[str, int] = {str(name): int(level) for name, level in pairs}
        self.codebook_sizes: list[int] = [int(size) for size in codebook_sizes]
        vocab = {token: i for i, token in enumerate(self._vocabulary())}
        backend = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        kwargs.setdefault("padding_side", "left")
        super().__init__(
            tokenizer_object=backend,
            pad_token="<pad>",
            eos_token="<eos>",
            unk_token="<unk>",
            behavior_table=self.behavior_table,
            codebook_sizes=self.codebook_sizes,
            **kwargs,
        )
        # A saved index was checked for duplicate code tuples when it was built; its trie (which checks
        # again) is built on first use, so loading stays a file read at millions of items.
        self._set_item_index(item_index if item_index is not None else {}, build_trie=not loaded)

    # ----- construction -----
    @classmethod
    def from_items(
        cls,
        item_index: Mapping[Any, Sequence[int]],
        behaviors: Mapping[str, int],
        codebook_size: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> "GamerTokenizerFast":
        """Build from an item -> code tuple map; `codebook_size` defaults to max code + 1 per level."""
        index = ItemIndex.from_mapping(item_index)
        num_levels = index.codes.shape[1] if len(index) else (len(codebook_size) if isinstance(codebook_size, Sequence) else 0)
        if codebook_size is None:
            sizes = (index.codes.max(0).astype(np.int64) + 1).tolist() if len(index) else []
        elif isinstance(codebook_size, int):
            sizes = [codebook_size] * num_levels
        else:
            sizes = list(codebook_size)
        if len(sizes) != num_levels:
            raise ValueError(f"codebook_size has {len(sizes)} levels but code tuples have {num_levels}")
        return cls(behaviors=dict(behaviors), codebook_sizes=sizes, item_index=index, **kwargs)

    def _vocabulary(self) -> list[str]:
        tokens = list(SPECIAL_TOKENS) + [_behavior_token(name) for name in self.behaviors]
        for level, size in enumerate(self.codebook_sizes):
            tokens += [_code_token(level, code) for code in range(size)]
        return tokens

    def _set_item_index(self, item_index: Mapping[str, Sequence[int]], build_trie: bool = True) -> None:
        """Validate with whole-array checks (a per-item Python loop takes minutes at millions of items).

        The index's code array (narrow, memory-mapped when loaded) is the one item table: code tokens are
        gathered from it with the level offsets added per batch, never held as a second `[num_items, K]` array."""
        index = ItemIndex.from_mapping(item_index)
        codes = index.codes
        if len(index) and codes.shape[1] != self.num_levels:
            raise ValueError(f"item {index.item_ids[0]!r} has {codes.shape[1]} codes, expected {self.num_levels}")
        sizes = np.asarray(self.codebook_sizes, dtype=np.int64)
        if len(index) and (int(codes.min()) < 0 or bool((codes.max(0) >= sizes).any())):
            row, level = (int(v) for v in np.argwhere((codes < 0) | (codes >= sizes))[0])
            raise ValueError(f"item {index.item_ids[row]!r}: code {int(codes[row, level])} at level {level + 1} "
                             f"is outside [0, {self.codebook_sizes[level]})")
        self.item_index: ItemIndex = index
        self._item_codes = torch.from_numpy(codes.reshape(len(index), self.num_levels))
        self._code_offsets = np.asarray(self.code_token_offsets, dtype=np.int64)
        if build_trie:
            ItemTrie.for_tokenizer(self)

    # ----- layout -----
    @property
    def behavior_table(self) -> list[list[Any]]:
        """[name, level] pairs in identity order; saved this way because JSON configs sort dict keys."""
        return [[name, level] for name, level in self.behaviors.items()]

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def behavior_identities(self) -> dict[str, int]:
        return {name: i + 1 for i, name in enumerate(self.behaviors)}

    @property
    def layout(self) -> GamerVocabLayout:
        return GamerVocabLayout(tuple(self.behaviors), tuple(self.behaviors.values()), tuple(self.codebook_sizes))

    @property
    def code_token_offsets(self) -> list[int]:
        return self.layout.code_token_offsets

    @property
    def target_behavior(self) -> str:
        return self.layout.target_behavior

    def behavior_token_id(self, name: str) -> int:
        return self.layout.behavior_token_id(name)

    def _codes_to_token_ids(self, codes: Sequence[int]) -> list[int]:
        return self.layout.code_token_ids(codes)

    def item_token_ids(self, item_id: str) -> list[int]:
        row = self.item_index.row(str(item_id))
        if row < 0:
            raise ValueError(f"unknown item {item_id!r}: it is not in the tokenizer's item index")
        return self.item_tokens(np.array([row]))[0].tolist()

    def item_tokens(self, rows: np.ndarray) -> np.ndarray:
        """`[len(rows), K]` int64 code token ids of item rows: one gather of the index's narrow code table plus the
        level offsets (what every encoder and the collator use instead of a token table of their own)."""
        return self.item_index.codes[rows] + self._code_offsets

    def code_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """True where a token is a semantic-ID code (the only tokens the LM loss scores)."""
        return input_ids >= self.code_token_offsets[0]

    # ----- encoding -----
    def encode_interactions(self, pairs: Sequence[Interaction], on_unknown: str = "raise") -> list[int]:
        """Flat ids `[beh, c1..cK]` per (behavior, item) pair; unknown pairs raise or are skipped.

        Malformed entries (not a pair, a None or float item id of a known behavior) always raise, naming the
        entry: they mean the history was built wrongly, not that the catalogue lacks an item.
        """
        return self._encode_many([pairs], on_unknown, name_history=False)[0].tolist()

    def _encode_many(self, histories: Sequence[Sequence[Interaction]], on_unknown: str,
                     name_history: bool = True) -> list[np.ndarray]:
        """`encode_interactions` of several histories (as int64 arrays) with one vectorized item lookup for all."""
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        behavior_ids = {name: self.layout.behavior_token_id(name) for name in self.behaviors}
        entries, items = [], []
        for index, pairs in enumerate(histories):
            for position, pair in enumerate(pairs):
                label = index if name_history else None
                behavior, item = _unpack_interaction(pair, position, label)
                beh = behavior_ids.get(behavior)
                if beh is not None:
                    _check_item_id(item, position, label)
                entries.append((index, beh, behavior, item))
                items.append(item if beh is not None else "")
        rows = self.item_index.rows(items).tolist()
        kept: list[list[int]] = [[] for _ in histories]
        for (index, beh, behavior, item), row in zip(entries, rows):
            if beh is not None and row >= 0:
                kept[index].append(row)
                kept[index].append(beh)
            elif on_unknown == "raise":
                where = f"history {index}, " if name_history else ""
                if beh is None:
                    raise ValueError(f"{where}unknown behavior {behavior!r} in history; known: {list(self.behaviors)}")
                raise ValueError(f"{where}unknown item {item!r} in history: it is not in the tokenizer's item index")
        return [self._interleave(flat) for flat in kept]

    def _interleave(self, flat: list[int]) -> np.ndarray:
        """[row, behavior token, row, ...] -> int64 [behavior token, code tokens..., ...]."""
        if not flat:
            return np.empty(0, dtype=np.int64)
        pairs = np.asarray(flat, dtype=np.int64).reshape(-1, 2)
        return np.concatenate([pairs[:, 1:], self.item_tokens(pairs[:, 0])], axis=1).reshape(-1)

    def encode_histories(
        self,
        histories: Sequence[Sequence[Interaction]],
        behavior: str | Sequence[str] | None = None,
        max_history: int | None = None,
        return_tensors: str | None = None,
        on_unknown: str = "raise",
    ) -> BatchEncoding:
        """Left-padded prompts: the last `max_history` interactions, then the requested behavior token."""
        if behavior is None:
            requested: list[str | None] = [None] * len(histories)
        elif isinstance(behavior, str):
            requested = [behavior] * len(histories)
        else:
            requested = list(behavior)
            if len(requested) != len(histories):
                raise ValueError(f"got {len(requested)} behaviors for {len(histories)} histories")
        sequences = self._encode_many(histories, on_unknown)
        if max_history is not None:
            sequences = [ids[len(ids) - min(len(ids), max_history * (self.num_levels + 1)) :] for ids in sequences]
        # Filled as arrays: a tensor from nested lists costs 6x more than the padding itself (2.1 against 0.36 ms
        # at 32 prompts of 251 tokens), and recommend() encodes every batch it decodes.
        ends = [int(beh is not None) for beh in requested]
        width = max((len(ids) + end for ids, end in zip(sequences, ends)), default=0)
        input_ids = np.full((len(sequences), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, (ids, beh, end) in enumerate(zip(sequences, requested, ends)):
            input_ids[row, width - end - len(ids) : width - end] = ids
            attention_mask[row, width - end - len(ids) :] = 1
            if end:
                input_ids[row, -1] = self.behavior_token_id(beh)
        encoded = {"input_ids": input_ids, "attention_mask": attention_mask}
        if return_tensors is None:  # lists, as a tokenizer returns them
            encoded = {name: array.tolist() for name, array in encoded.items()}
        return BatchEncoding(encoded, tensor_type=return_tensors)

    # ----- decoding -----
    def decode_items(self, codes: torch.Tensor | Sequence[Sequence[int]], token_ids: bool = True) -> list[str | None]:
        """Map [N, K] code token ids (or raw code values, `token_ids=False`) to item ids; None off the index."""
        rows = codes.tolist() if isinstance(codes, torch.Tensor) else [list(row) for row in codes]
        bad = next((row for row in rows if len(row) != self.num_levels), None)
        if bad is not None:
            raise ValueError(f"expected {self.num_levels} codes per row, got {len(bad)}")
        if not rows:
            return []
        shift = torch.tensor(self.code_token_offsets if token_ids else [0] * self.num_levels)
        found = ItemTrie.for_tokenizer(self).items_of(torch.tensor(rows, dtype=torch.long) - shift).tolist()
        ids = self.item_ids
        return [ids[row] if row >= 0 else None for row in found]

    @property
    def item_code_tensor(self) -> torch.Tensor:
        """[num_items, K] code values in item-index order (row i is item `self.item_ids[i]`), in the index's narrow
        integer type (uint8/int16/int32; memory-mapped when loaded); shared, do not modify."""
        return self._item_codes

    @property
    def item_ids(self) -> ItemIds:
        """The catalogue's ids in row order (sorted), as a read-only sequence decoded on access, not a copy."""
        return self.item_index.item_ids

    # ----- persistence -----
    def save_pretrained(self, save_directory, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """Save as usual, plus the remote-code files and an `auto_map` for AutoTokenizer (pushed with them too)."""
        return save_with_remote_code(self, super().save_pretrained, save_directory, "tokenizer_config.json", args, kwargs)

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        files = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        path = os.path.join(str(save_directory), (filename_prefix + "-" if filename_prefix else "") + ITEM_INDEX_FILE)
        self.item_index.save(path)
        return files + (path,)


def _entry(position: int, history: int | None) -> str:
    return f"entry {position}" if history is None else f"history {history}, entry {position}"


def _unpack_interaction(pair: Any, position: int, history: int | None = None) -> Interaction:
    """(behavior, item) of one history entry, refusing what is not a pair with a string behavior. A tuple or list
    skips the abstract `Sequence` check, which costs more than the rest of the entry's encoding."""
    if (type(pair) not in (tuple, list) and (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence))
            or len(pair) != 2):
        raise ValueError(f"{_entry(position, history)}: expected a (behavior, item_id) pair, got {pair!r}")
    behavior, item = pair
    if not isinstance(behavior, str):
        raise ValueError(f"{_entry(position, history)}: behavior must be a string, got {behavior!r} "
                         f"({type(behavior).__name__})")
    return behavior, item


def _check_item_id(item: Any, position: int, history: int | None = None) -> None:
    """Item ids are strings or ints; None, floats and bools mean the history was built wrongly."""
    if type(item) is str:  # the common case, before the abstract `Integral` check
        return
    if item is None or isinstance(item, (bool, float)) or not isinstance(item, (str, numbers.Integral)):
        why = ("a missing id" if item is None else
               "a float id usually comes from a column read with missing values; cast ids to str" if isinstance(item, float)
               else "item ids are strings or ints")
        raise ValueError(f"{_entry(position, history)}: item id {item!r} ({type(item).__name__}) is not valid: {why}")


def _read_legacy_item_index(path: str) -> ItemIndex:
    """`item_index.json` of earlier releases: {"item_ids": [...], "codes": [[...], ...]}."""
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    try:
        item_ids, codes = payload["item_ids"], payload["codes"]
    except (TypeError, KeyError):
        raise ValueError(f"{path}: expected an object with 'item_ids' and 'codes' lists") from None
    if len(item_ids) != len(codes):
        raise ValueError(f"{path}: {len(item_ids)} item_ids but {len(codes)} code rows")
    if len({len(row) for row in codes}) > 1:
        raise ValueError(f"{path}: code rows of different lengths")
    return ItemIndex.from_pairs(item_ids, codes, where=path)
