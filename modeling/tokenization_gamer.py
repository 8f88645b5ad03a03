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

import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import BatchEncoding, PreTrainedTokenizerFast

from .configuration_gamer import NUM_SPECIAL_TOKENS, GamerVocabLayout, save_with_remote_code

__all__ = ["GamerTokenizerFast"]

ITEM_INDEX_FILE = "item_index.json"
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
    on load instead of trusted from `tokenizer.json`; the item index is saved as `item_index.json`.
    """

    vocab_files_names = {"tokenizer_file": "tokenizer.json", "item_index_file": ITEM_INDEX_FILE}
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
        behavior_table: Sequence[Sequence[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        behaviors = behavior_table if behaviors is None else behaviors
        if behaviors is None or codebook_sizes is None:
            raise ValueError("GamerTokenizerFast needs `behaviors` (name -> level) and `codebook_sizes`")
        if item_index is None and item_index_file is not None:
            item_index = _read_item_index(item_index_file)
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
        self.item_index: dict[str, tuple[int, ...]] = {}
        self._set_item_index(item_index or {})

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
        index = {str(item): tuple(int(c) for c in codes) for item, codes in item_index.items()}
        lengths = {len(codes) for codes in index.values()}
        if len(lengths) > 1:
            raise ValueError(f"all code tuples must have the same length, got lengths {sorted(lengths)}")
        num_levels = lengths.pop() if lengths else (len(codebook_size) if isinstance(codebook_size, Sequence) else 0)
        if codebook_size is None:
            sizes = [max(codes[level] for codes in index.values()) + 1 for level in range(num_levels)]
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

    def _set_item_index(self, item_index: Mapping[str, Sequence[int]]) -> None:
        index = {str(item): tuple(int(c) for c in codes) for item, codes in item_index.items()}
        for item, codes in index.items():
            if len(codes) != self.num_levels:
                raise ValueError(f"item {item!r} has {len(codes)} codes, expected {self.num_levels}")
            for level, code in enumerate(codes):
                if not 0 <= code < self.codebook_sizes[level]:
                    raise ValueError(
                        f"item {item!r}: code {code} at level {level + 1} is outside [0, {self.codebook_sizes[level]})"
                    )
        self.item_index = index
        self._item_ids = list(index)
        self._tokens_by_item = {item: self._codes_to_token_ids(codes) for item, codes in index.items()}
        self._item_by_codes = {codes: item for item, codes in index.items()}
        if len(self._item_by_codes) != len(index):
            raise ValueError("the item index maps two items to the same code tuple; semantic IDs must be unique")

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
        try:
            return self._tokens_by_item[str(item_id)]
        except KeyError:
            raise ValueError(f"unknown item {item_id!r}: it is not in the tokenizer's item index") from None

    def code_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """True where a token is a semantic-ID code (the only tokens the LM loss scores)."""
        return input_ids >= self.code_token_offsets[0]

    # ----- encoding -----
    def encode_interactions(self, pairs: Sequence[Interaction], on_unknown: str = "raise") -> list[int]:
        """Flat ids `[beh, c1..cK]` per (behavior, item) pair; unknown pairs raise or are skipped.

        Malformed entries (not a pair, a None or float item id of a known behavior) always raise, naming the
        entry: they mean the history was built wrongly, not that the catalogue lacks an item.
        """
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        behavior_ids = {name: self.layout.behavior_token_id(name) for name in self.behaviors}
        ids: list[int] = []
        for position, pair in enumerate(pairs):
            behavior, item = _unpack_interaction(pair, position)
            beh = behavior_ids.get(behavior)
            if beh is None:
                if on_unknown == "skip":
                    continue
                raise ValueError(f"unknown behavior {behavior!r} in history; known: {list(self.behaviors)}")
            _check_item_id(item, position)
            codes = self._tokens_by_item.get(str(item))
            if codes is None:
                if on_unknown == "skip":
                    continue
                raise ValueError(f"unknown item {item!r} in history: it is not in the tokenizer's item index")
            ids.append(beh)
            ids.extend(codes)
        return ids

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
        sequences = []
        for index, (history, beh) in enumerate(zip(histories, requested)):
            try:
                ids = self.encode_interactions(history, on_unknown=on_unknown)
            except ValueError as error:
                raise ValueError(f"history {index}, {error}") from None
            if max_history is not None:
                ids = ids[len(ids) - min(len(ids), max_history * (self.num_levels + 1)) :]
            if beh is not None:
                ids = ids + [self.behavior_token_id(beh)]
            sequences.append(ids)
        width = max((len(s) for s in sequences), default=0)
        input_ids = [[self.pad_token_id] * (width - len(s)) + s for s in sequences]
        attention_mask = [[0] * (width - len(s)) + [1] * len(s) for s in sequences]
        return BatchEncoding({"input_ids": input_ids, "attention_mask": attention_mask}, tensor_type=return_tensors)

    # ----- decoding -----
    def decode_items(self, codes: torch.Tensor | Sequence[Sequence[int]], token_ids: bool = True) -> list[str | None]:
        """Map [N, K] code token ids (or raw code values, `token_ids=False`) to item ids; None off the index."""
        rows = codes.tolist() if isinstance(codes, torch.Tensor) else [list(row) for row in codes]
        shift = self.code_token_offsets if token_ids else [0] * self.num_levels
        items: list[str | None] = []
        for row in rows:
            if len(row) != self.num_levels:
                raise ValueError(f"expected {self.num_levels} codes per row, got {len(row)}")
            items.append(self._item_by_codes.get(tuple(v - o for v, o in zip(row, shift))))
        return items

    @property
    def item_code_tensor(self) -> torch.Tensor:
        """[num_items, K] code values in item-index order (row i is item `self.item_ids[i]`)."""
        return torch.tensor([self.item_index[item] for item in self._item_ids], dtype=torch.long).reshape(
            len(self._item_ids), self.num_levels
        )

    @property
    def item_ids(self) -> list[str]:
        return list(self._item_ids)

    # ----- persistence -----
    def save_pretrained(self, save_directory, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """Save as usual, plus the remote-code files and an `auto_map` for AutoTokenizer (pushed with them too)."""
        return save_with_remote_code(self, super().save_pretrained, save_directory, "tokenizer_config.json", args, kwargs)

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        files = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        path = os.path.join(str(save_directory), (filename_prefix + "-" if filename_prefix else "") + ITEM_INDEX_FILE)
        payload = {"item_ids": self._item_ids, "codes": [list(self.item_index[i]) for i in self._item_ids]}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
        os.replace(tmp, path)
        return files + (path,)


def _unpack_interaction(pair: Any, position: int) -> Interaction:
    """(behavior, item) of one history entry, refusing what is not a pair with a string behavior."""
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise ValueError(f"entry {position}: expected a (behavior, item_id) pair, got {pair!r}")
    behavior, item = pair
    if not isinstance(behavior, str):
        raise ValueError(f"entry {position}: behavior must be a string, got {behavior!r} "
                         f"({type(behavior).__name__})")
    return behavior, item


def _check_item_id(item: Any, position: int) -> None:
    """Item ids are strings or ints; None, floats and bools mean the history was built wrongly."""
    if item is None or isinstance(item, (bool, float)) or not isinstance(item, (str, numbers.Integral)):
        why = ("a missing id" if item is None else
               "a float id usually comes from a column read with missing values; cast ids to str" if isinstance(item, float)
               else "item ids are strings or ints")
        raise ValueError(f"entry {position}: item id {item!r} ({type(item).__name__}) is not valid: {why}")


def _read_item_index(path: str) -> dict[str, tuple[int, ...]]:
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    try:
        item_ids, codes = payload["item_ids"], payload["codes"]
    except (TypeError, KeyError):
        raise ValueError(f"{path}: expected an object with 'item_ids' and 'codes' lists") from None
    if len(item_ids) != len(codes):
        raise ValueError(f"{path}: {len(item_ids)} item_ids but {len(codes)} code rows")
    return {str(item): tuple(row) for item, row in zip(item_ids, codes)}
