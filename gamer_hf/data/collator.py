"""Batches of prepared rows for the model: right-padded input_ids, attention_mask and labels, or
(`pack=True`, where it saves rows) packed rows: input_ids, position_ids restarting per example, labels.

Training rows (`behaviors`, `items`) become `[beh, c1..cK]` per interaction with every code token
scored (full-sequence LM loss). Validation/test rows (`history_*`, `target_behavior`,
`target_items`) become one sequence per target item: the history, the requested behavior token,
then the target item's codes, with labels only on those codes, so the Trainer's eval loss scores
exactly the held-out targets. Use `remove_unused_columns=False` in TrainingArguments so the
Trainer hands these columns to the collator.

Collation is vectorized: a batch costs one vectorized search of its ids in the tokenizer's index (an
Arrow batch: of its distinct ids, read from the Arrow string buffers) and a few numpy gathers from the
tokenizer's own code table (narrow, memory-mapped when loaded; the level offsets are added to the
gathered rows), instead of a Python loop that builds token lists pair by pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .arrays import ranges_to_flat

__all__ = ["GamerCollator"]

IGNORE_INDEX = -100
UNKNOWN = -1


@dataclass(frozen=True)
class _TokenTable:
    """Item id -> item row (the tokenizer's sorted `ItemIndex`) -> code token ids (`tokenizer.item_tokens`, a gather
    of the tokenizer's code table, not a copy of it); behavior -> token id. Ids are found by the index's vectorized
    binary search: a dict of every id would cost about 130 bytes per item (half a gigabyte at 4M items), and a
    token table of its own 8 bytes per code (150 MB at 4M items), in every training process."""

    index: Any  # the tokenizer's ItemIndex
    item_tokens: Callable[[np.ndarray], np.ndarray]  # item rows -> [rows, num_levels] code token ids
    num_levels: int
    behavior_tokens: dict[str, int]

    @classmethod
    def build(cls, tokenizer: Any) -> "_TokenTable":
        behaviors = {name: tokenizer.behavior_token_id(name) for name in tokenizer.behaviors}
        return cls(tokenizer.item_index, tokenizer.item_tokens, tokenizer.num_levels, behaviors)

    def items(self, values: Sequence[Any]) -> np.ndarray:
        """Item rows, UNKNOWN when absent; ids are looked up as str(id), as the tokenizer does."""
        return _lookup(self.index.rows, values, self._string_rows)

    def _string_rows(self, ids: pa.Array) -> np.ndarray:
        """`index.rows` of an Arrow string array, searched in its own buffers: no Python string is made."""
        offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64 if pa.types.is_large_string(ids.type) else np.int32)
        data = ids.buffers()[2]
        return self.index.rows_of_buffer(b"" if data is None else data, offsets[ids.offset:ids.offset + len(ids) + 1])

    def behaviors(self, values: Sequence[Any]) -> np.ndarray:
        return _lookup(lambda names: np.fromiter(map(self.behavior_tokens.get, names, repeat(UNKNOWN)), np.int64,
                                                 count=len(names)), values)


def _lookup(find: Callable[[Sequence[Any]], np.ndarray], values: Sequence[Any],
            find_strings: Callable[[pa.Array], np.ndarray] | None = None) -> np.ndarray:
    """find(values) (UNKNOWN where absent); an Arrow array looks up its distinct values only, a string one with
    `find_strings` where given."""
    if isinstance(values, pa.Array):
        encoded = pc.dictionary_encode(values)
        strings = find_strings is not None and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type))
        found = find_strings(encoded.dictionary) if strings else find(encoded.dictionary.to_pylist())
        indices = pc.fill_null(encoded.indices, len(found)) if encoded.indices.null_count else encoded.indices
        indices = indices.to_numpy(zero_copy_only=False)  # null -> UNKNOWN
        return np.append(found, UNKNOWN)[indices]
    return find(values)


def _window(lists: pa.ListArray, offsets: np.ndarray, start: np.ndarray, end: np.ndarray) -> pa.Array:
    """The values [start, end) of every list, in order: a slice of the values where the windows are the whole
    lists (rows prepared within max_history), else a take."""
    if not start.any() and np.array_equal(end, np.diff(offsets)):
        return lists.values.slice(offsets[0], offsets[-1] - offsets[0])
    return lists.values.take(ranges_to_flat(offsets[:-1] + start, offsets[:-1] + end)[1])


def _joined(first: Sequence[Any], second: Sequence[Any]) -> Sequence[Any]:
    """Both columns in one sequence, so that a batch pays one lookup for its history and its targets."""
    if not len(second):
        return first
    if isinstance(first, pa.Array):  # an Arrow batch: both columns are Arrow arrays
        return pa.concat_arrays([first, second.cast(first.type)])
    return [*first, *second]


def _split(found: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    return found[:size], found[size:]


def _value(values: Sequence[Any], position: int) -> Any:
    value = values[int(position)]
    return value.as_py() if isinstance(value, pa.Scalar) else value


@dataclass
class _Batch:
    """The batch's columns flattened in row order (lists, or Arrow arrays for an Arrow batch), with
    interactions already trimmed to the history window.

    Gathering rows stops at the first row with neither training nor evaluation columns
    (`bad_row`), so errors in the rows before it are still reported first, as a row loop would.
    """

    behaviors: Sequence[Any]
    items: Sequence[Any]
    counts: np.ndarray  # interactions per row
    evaluation: np.ndarray  # per row: evaluation (True) or training (False)
    requested: Sequence[Any]  # target_behavior per evaluation row
    targets: Sequence[Any]
    target_counts: np.ndarray  # targets per evaluation row
    bad_row: Mapping[str, Any] | None

    @classmethod
    def gather(cls, rows: Sequence[Mapping[str, Any]], max_history: int | None) -> "_Batch":
        behaviors, items, counts, evaluation, requested, targets, target_counts = [], [], [], [], [], [], []
        bad_row = None
        for row in rows:
            if "items" in row:
                pair_behaviors, pair_items = row["behaviors"], row["items"]
                window = None if max_history is None else max_history + 1
            elif "target_items" in row:
                pair_behaviors, pair_items, window = row["history_behaviors"], row["history_items"], max_history
                requested.append(row["target_behavior"])
                targets.append(row["target_items"])
                target_counts.append(len(row["target_items"]))
            else:
                bad_row = row
                break
            evaluation.append("items" not in row)
            end = min(len(pair_behaviors), len(pair_items))  # pairs, as zip() makes them
            start = 0 if window is None else end - min(end, window)
            whole = start == 0 and end == len(pair_behaviors) == len(pair_items)  # prepared rows: no copy
            behaviors.append(pair_behaviors if whole else pair_behaviors[start:end])
            items.append(pair_items if whole else pair_items[start:end])
            counts.append(end - start)
        return cls(list(chain.from_iterable(behaviors)), list(chain.from_iterable(items)),
                   np.array(counts, dtype=np.int64), np.array(evaluation, dtype=bool), requested,
                   list(chain.from_iterable(targets)), np.array(target_counts, dtype=np.int64), bad_row)

    @classmethod
    def gather_arrow(cls, batch: pa.Table | pa.RecordBatch, max_history: int | None) -> "_Batch":
        """The same from an Arrow batch of one split's rows, without turning them into Python objects."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if "items" in table.column_names:
            window = None if max_history is None else max_history + 1
            columns, evaluation = ("behaviors", "items"), False
        elif "target_items" in table.column_names:
            columns, window, evaluation = ("history_behaviors", "history_items"), max_history, True
        else:
            nothing = np.zeros(0, dtype=np.int64)
            return cls([], [], nothing, nothing.astype(bool), [], [], nothing, dict.fromkeys(table.column_names))
        behaviors, items = (table[name].combine_chunks() for name in columns)
        behavior_offsets, item_offsets = behaviors.offsets.to_numpy(), items.offsets.to_numpy()
        end = np.minimum(np.diff(behavior_offsets), np.diff(item_offsets))  # pairs, as zip() makes them
        start = np.zeros_like(end) if window is None else end - np.minimum(end, window)
        behaviors, items = (_window(lists, offsets, start, end)
                            for lists, offsets in ((behaviors, behavior_offsets), (items, item_offsets)))
        requested, targets, target_counts = [], [], np.zeros(0, dtype=np.int64)
        if evaluation:
            requested = table["target_behavior"].combine_chunks()
            lists = table["target_items"].combine_chunks()
            offsets = lists.offsets.to_numpy()
            targets, target_counts = lists.values.slice(offsets[0], offsets[-1] - offsets[0]), np.diff(offsets)
        return cls(behaviors, items, (end - start).astype(np.int64), np.full(len(end), evaluation), requested,
                   targets, target_counts.astype(np.int64), None)

    @property
    def interaction_rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    @property
    def target_rows(self) -> np.ndarray:
        return np.repeat(np.flatnonzero(self.evaluation), self.target_counts)


class GamerCollator:
    """Collate training or evaluation rows (or a mix) into right-padded tensors.

    `max_history` trims training rows to their last max_history + 1 interactions and prompts to
    their last max_history; `on_unknown="skip"` drops interactions and targets the tokenizer's item
    index does not know (e.g. items without semantic IDs) instead of raising. `pack=True` packs the
    examples first-fit into rows as wide as the longest one whenever that needs fewer rows than padding
    (histories of mixed length); the loss and its gradients are those of the padded batch.
    """

    def __init__(
        self,
        tokenizer: Any,
        max_history: int | None = None,
        on_unknown: str = "raise",
        pad_to_multiple_of: int | None = None,
        pack: bool = False,
    ) -> None:
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        if max_history is not None and max_history < 0:
            raise ValueError(f"max_history must be None or >= 0, got {max_history}")
        self.tokenizer, self.max_history, self.on_unknown = tokenizer, max_history, on_unknown
        self.pad_to_multiple_of, self.pack = pad_to_multiple_of, pack
        self._table: _TokenTable | None = None

    def _token_table(self) -> _TokenTable:
        """Built on first use (the tokenizer's item index is fixed once it is constructed)."""
        if self._table is None:
            self._table = _TokenTable.build(self.tokenizer)
        return self._table

    def __call__(self, rows: Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch) -> dict[str, torch.Tensor]:
        """Rows as the Trainer's DataLoader hands them over, or one Arrow batch of a split's rows, which
        the DataLoader fetches without making Python objects:
        `DataLoader(split.with_format("arrow"), batch_size=None, sampler=BatchSampler(...))`."""
        table = self._token_table()
        if isinstance(rows, (pa.Table, pa.RecordBatch)):
            batch = _Batch.gather_arrow(rows, self.max_history)
        else:
            batch = _Batch.gather(rows, self.max_history)
        behaviors, requested = _split(table.behaviors(_joined(batch.behaviors, batch.requested)), len(batch.behaviors))
        items, targets = _split(table.items(_joined(batch.items, batch.targets)), len(batch.items))
        known, known_targets = (behaviors != UNKNOWN) & (items != UNKNOWN), targets != UNKNOWN
        strict = self.on_unknown == "raise"  # an unknown requested behavior raises either way
        self._raise_first_unknown(batch, ~known & strict, requested == UNKNOWN, ~known_targets & strict)
        if batch.bad_row is not None:
            raise ValueError(f"row has neither training nor evaluation columns: {sorted(batch.bad_row)}")
        tokens, lengths, first = _examples(table, batch, behaviors[known], items[known], requested,
                                           targets[known_targets], known, known_targets)
        if not lengths.size:
            raise ValueError("no example left in this batch (all interactions unknown to the tokenizer?)")
        if self.pack:
            rows = _pack_rows(lengths, self._width(lengths))
            if rows.max() + 1 < len(lengths):  # packing saves whole rows of padding
                return self._packed(tokens, lengths, first, rows)
        return self._pad(tokens, lengths, first)

    def _width(self, lengths: np.ndarray) -> int:
        width = int(lengths.max())
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return width

    def _raise_first_unknown(
        self, batch: _Batch, bad_pairs: np.ndarray, bad_requests: np.ndarray, bad_targets: np.ndarray
    ) -> None:
        """Raise the tokenizer's own error for the first unknown id in row order, if there is one."""
        failing = [batch.interaction_rows[bad_pairs], np.flatnonzero(batch.evaluation)[bad_requests],
                   batch.target_rows[bad_targets]]
        rows = [found.min() for found in failing if found.size]
        if not rows:
            return
        row = min(rows)
        pairs = np.flatnonzero(bad_pairs & (batch.interaction_rows == row))
        targets = np.flatnonzero(bad_targets & (batch.target_rows == row))
        if pairs.size:
            self.tokenizer.encode_interactions([(_value(batch.behaviors, pairs[0]), _value(batch.items, pairs[0]))])
        elif row in failing[1]:
            self.tokenizer.behavior_token_id(_value(batch.requested, np.cumsum(batch.evaluation)[row] - 1))
        else:
            self.tokenizer.item_token_ids(_value(batch.targets, targets[0]))
        raise ValueError(f"row {row} of the batch has an id the tokenizer does not know")

    def _pad(self, tokens: np.ndarray, lengths: np.ndarray, first: np.ndarray) -> dict[str, torch.Tensor]:
        width = self._width(lengths)
        columns = np.arange(width)
        filled = columns < lengths[:, None]  # right padding: tokens first, pads after
        ids = np.full((len(lengths), width), self.tokenizer.pad_token_id, dtype=np.int64)
        ids[filled] = tokens
        scored = filled & (columns >= first[:, None])
        # numpy for the arithmetic: tiny torch ops stall when the intra-op pool competes for busy cores
        input_ids = torch.from_numpy(ids)
        code = self.tokenizer.code_token_mask(input_ids).numpy()
        labels = np.where(scored & code, ids, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": torch.from_numpy(filled.astype(np.int64)),
                "labels": torch.from_numpy(labels)}

    def _packed(self, tokens: np.ndarray, lengths: np.ndarray, first: np.ndarray,
                rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Examples laid end to end in `rows` (the packed row of each), `position_ids` restarting at every
        example and no attention_mask: that is how the model (and Transformers' mask utilities) recognise
        packed rows, keeping attention and the cross-level rule inside each example.

        A row's unused tail is padding that starts a "sequence" of its own (position 0), so no real token
        reads it. Labels need no boundary marks: every example starts with a behavior token, never scored,
        so the loss's one-token shift never scores a token of one example from the end of the one before.
        """
        width, num_rows = self._width(lengths), int(rows.max()) + 1
        used = np.bincount(rows, weights=lengths, minlength=num_rows).astype(np.int64)
        order = np.argsort(rows, kind="stable")  # by row, in batch order inside a row
        column = np.empty_like(lengths)
        column[order] = np.cumsum(lengths[order]) - lengths[order] - (np.cumsum(used) - used)[rows[order]]
        example_start = np.cumsum(lengths) - lengths  # in `tokens`, which lists the examples in batch order
        token = np.arange(lengths.sum())
        target = token + np.repeat(rows * width + column - example_start, lengths)
        position = token - np.repeat(example_start, lengths)
        columns = np.arange(width)
        ids = np.full((num_rows, width), self.tokenizer.pad_token_id, dtype=np.int64)
        position_ids = np.maximum(columns - used[:, None], 0)  # each tail: its own sequence from 0
        scored = np.zeros((num_rows, width), dtype=bool)
        ids.ravel()[target], position_ids.ravel()[target] = tokens, position
        scored.ravel()[target] = position >= np.repeat(first, lengths)
        input_ids = torch.from_numpy(ids)
        labels = np.where(scored & self.tokenizer.code_token_mask(input_ids).numpy(), ids, IGNORE_INDEX)
        return {"input_ids": input_ids, "position_ids": torch.from_numpy(position_ids),
                "labels": torch.from_numpy(labels)}


def _pack_rows(lengths: np.ndarray, width: int) -> np.ndarray:
    """Row of each example when packed first-fit decreasing into rows of `width` tokens (a few Python steps
    per example, none per token)."""
    rows, fill = np.empty(len(lengths), dtype=np.int64), []
    for example in np.argsort(-lengths, kind="stable"):
        row = next((r for r, used in enumerate(fill) if used + lengths[example] <= width), len(fill))
        if row == len(fill):
            fill.append(0)
        fill[row] += int(lengths[example])
        rows[example] = row
    return rows


def _examples(
    table: _TokenTable, batch: _Batch, behaviors: np.ndarray, items: np.ndarray, requested: np.ndarray,
    targets: np.ndarray, known: np.ndarray, known_targets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat token ids of every example in order, their lengths and first scored positions.

    All tokens come from one pool: the kept interactions as `[beh, c1..cK]` blocks, then one
    requested-behavior token per evaluation row, then the kept targets' codes. An example is up to
    three ranges of that pool: its row's history, the requested behavior, one target's codes.
    """
    levels = table.num_levels
    rows = len(batch.counts)
    history = np.bincount(batch.interaction_rows[known], minlength=rows) * (levels + 1)
    history_start = np.cumsum(history) - history
    blocks = np.concatenate([behaviors[:, None], table.item_tokens(items)], axis=1).ravel()
    if not batch.evaluation.any():  # training rows only: the examples are the rows' blocks, as they lie
        return blocks, history[history > 0], np.zeros(np.count_nonzero(history), dtype=np.int64)
    pool = np.concatenate([blocks, requested, table.item_tokens(targets).ravel()])
    request_start = blocks.size + np.cumsum(batch.evaluation) - 1  # read at evaluation rows only
    target_start = blocks.size + requested.size + levels * np.arange(targets.size)

    training = np.flatnonzero(~batch.evaluation & (history > 0))
    example_row = np.concatenate([training, batch.target_rows[known_targets]])
    evaluation = np.r_[np.zeros(training.size, dtype=bool), np.ones(targets.size, dtype=bool)]
    order = np.argsort(example_row, kind="stable")  # row order; a row's targets stay in order
    example_row, evaluation = example_row[order], evaluation[order]
    starts = np.stack([history_start[example_row], np.where(evaluation, request_start[example_row], 0),
                       np.r_[np.zeros(training.size, dtype=np.int64), target_start][order]], axis=1)
    lengths = np.stack([history[example_row], evaluation.astype(np.int64), evaluation * levels], axis=1)
    _, source = ranges_to_flat(starts.ravel(), (starts + lengths).ravel())
    first = np.where(evaluation, history[example_row] + 1, 0)
    return pool[source], lengths.sum(axis=1), first
