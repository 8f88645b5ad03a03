"""Batches of prepared rows for the model: right-padded input_ids, attention_mask and labels, or
(`pack=True`, where it saves rows) packed rows: input_ids, position_ids restarting per example, labels.

Training rows (`behaviors`, `items`) become `[beh, c1..cK]` per interaction with every code token
scored (full-sequence LM loss). Validation/test rows (`history_*`, `target_behavior`,
`target_items`) become one sequence per target item: the history, the requested behavior token,
then the target item's codes, with labels only on those codes, so the Trainer's eval loss scores
exactly the held-out targets. Use `remove_unused_columns=False` in TrainingArguments so the
Trainer hands these columns to the collator.

Collation is vectorized: a few numpy gathers from the tokenizer's own code table (narrow, memory-mapped when
loaded; the level offsets are added to the gathered rows), instead of a Python loop that builds token lists pair
by pair. For an Arrow batch of a prepared split, the rows' number columns (positions in the folder's behavior
table and item id map) are turned into tokens by gathers through `numbers` (`RowNumbers`, built once per run), so
a batch looks nothing up; otherwise (Python rows, folders prepared before the number columns, no `numbers`) the
batch's ids are found by one vectorized search in the tokenizer's index (an Arrow batch: of its distinct ids, read
from the Arrow string buffers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..errors import ConfigurationError, DataError
from .arrays import ranges_to_flat
from .id_lists import string_buffers
from .prepare import LazyIds

__all__ = ["CATALOGUE_CHUNK", "GamerCollator", "RowNumbers", "catalogue_rows"]

IGNORE_INDEX = -100
UNKNOWN = -1
CATALOGUE_CHUNK = 1 << 18  # catalogue ids looked up at once by catalogue_rows (bounds the search's temporaries)
# the number column beside each name and id column of a prepared split (gamer_hf.data.sequences)
NUMBER_COLUMNS = {"behaviors": "behavior_numbers", "items": "item_numbers",
                  "history_behaviors": "history_behavior_numbers", "history_items": "history_item_numbers",
                  "target_behavior": "target_behavior_number", "target_items": "target_item_numbers"}


def catalogue_rows(tokenizer: Any, item_ids: Sequence[str] | pa.Array) -> np.ndarray:
    """The tokenizer's item row of each item number of a prepared folder (`item_ids`: its id map,
    `load_prepared(...).item_ids`), UNKNOWN where the tokenizer lacks the item: int32, one per catalogue item.
    One search of the catalogue per run, in slices, lets every batch turn item numbers into tokens by gathers."""
    ids = item_ids.ids if isinstance(item_ids, LazyIds) else item_ids if isinstance(item_ids, pa.Array) else None
    rows = np.empty(len(item_ids), dtype=np.int32)
    for start in range(0, len(item_ids), CATALOGUE_CHUNK):
        chunk = (ids.slice(start, CATALOGUE_CHUNK) if ids is not None else
                 pa.array([str(item) for item in item_ids[start:start + CATALOGUE_CHUNK]], pa.string()))
        rows[start:start + len(chunk)] = tokenizer.item_index.rows_of_buffer(*string_buffers(chunk))
    return rows


def _behavior_tokens(tokenizer: Any, names: Sequence[str]) -> np.ndarray:
    """The token id of each behavior name, UNKNOWN where the tokenizer lacks it."""
    return np.array([tokenizer.behavior_token_id(name) if name in tokenizer.behaviors else UNKNOWN for name in names],
                    dtype=np.int64)


@dataclass(frozen=True)
class RowNumbers:
    """What the number columns of a prepared folder's rows stand for in one tokenizer: the item row of each item
    number and the token id of each behavior number, UNKNOWN where the tokenizer lacks one. Built once per run
    (`RowNumbers.of`: one search of the catalogue); with it the collator turns a batch's numbers into tokens by
    gathers, and looks no id up."""

    items: np.ndarray  # item number -> the tokenizer's item row (`catalogue_rows`)
    behaviors: np.ndarray  # behavior number -> behavior token id
    index: Any = field(default=None, repr=False, compare=False)  # the ItemIndex `items` are rows of (None: unchecked)
    behavior_names: tuple[str, ...] = ()  # the names the behavior numbers stand for (empty: unchecked)
    source: str = "the prepared folder"  # whose id map the item numbers are positions in, named in errors

    @classmethod
    def of(cls, tokenizer: Any, item_ids: Sequence[str] | pa.Array, behaviors: Iterable[str]) -> "RowNumbers":
        """`item_ids`: the folder's id map (`load_prepared(...).item_ids`); `behaviors`: its behavior names in
        order (`metadata["behaviors"]`)."""
        names = tuple(behaviors)
        source = str(item_ids.path.parent) if isinstance(item_ids, LazyIds) else cls.source
        return cls(catalogue_rows(tokenizer, item_ids), _behavior_tokens(tokenizer, names), tokenizer.item_index,
                   names, source)

    def fits(self, tokenizer: Any) -> bool:
        """Whether these numbers hold in `tokenizer`: its index gives every id the same row (the same ids; the codes
        may differ, they are gathered from it) and its behaviors the same token ids."""
        return ((self.index is None or self.index.same_rows(tokenizer.item_index))
                and (not self.behavior_names
                     or np.array_equal(_behavior_tokens(tokenizer, self.behavior_names), self.behaviors)))

    def check(self, table: pa.Table, names: Sequence[str]) -> None:
        """Refuse rows whose numbers are not their ids: each list of ids (`names`) must be as long as its list of
        numbers (an edit of the id columns, `Dataset.map`, leaves the numbers as prepared), and the first id of each
        item column, looked up (one search of a few ids, cached), must be the row its number gathers (numbers of
        another folder, or of a folder whose id map changed after prepare). Either would otherwise collate other
        items than the ids say without a word."""
        for name in names:
            ids, numbers = _column(table, name), _column(table, NUMBER_COLUMNS[name])
            if not _is_list(ids):  # target_behavior: one per row, as its number
                continue
            offsets, number_offsets = ids.offsets, numbers.offsets  # as prepared: equal (one compare in C++)
            if not offsets.equals(number_offsets) and not np.array_equal(np.diff(offsets.to_numpy()),
                                                                           np.diff(number_offsets.to_numpy())):
                raise DataError(f"{self.source}: a row's {name} and {NUMBER_COLUMNS[name]} differ in length: the ids "
                                "were changed after prepare; drop the number columns or prepare the data again")
            start, stop = offsets[0].as_py(), offsets[-1].as_py()
            if self.index is None or not name.endswith("items") or start == stop:
                continue
            item, number = ids.values[start].as_py(), numbers.values[number_offsets[0].as_py()].as_py()
            if self.gather(self.items, number, "item") != self.index.rows([item])[0]:
                raise DataError(f"{self.source}: a row's {name} holds {item!r} as item number {number}, another item "
                                "in the id map: the rows were not prepared with it; build RowNumbers from the rows' "
                                "own folder, or prepare the data again")

    def gather(self, table: np.ndarray, numbers: np.ndarray | int, kind: str) -> np.ndarray | np.integer:
        """`table[numbers]` (`items` or `behaviors`), a DataError naming the number where one is past the table."""
        try:
            return table[numbers]
        except IndexError:
            raise DataError(f"{self.source}: a row has {kind} number {int(np.max(numbers))}, past the {len(table)} "
                            f"{kind}s of this folder: its rows and id map disagree; prepare the data again") from None


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
    numbers: RowNumbers | None  # what the prepared folder's numbers are in this tokenizer
    code_start: int  # the first code token id: `code_token_mask` is ids >= it (read once, not per batch)
    pad_token_id: int
    behavior_names: pa.Array  # the behaviors' names, and their token ids followed by UNKNOWN
    behavior_ids: np.ndarray

    @classmethod
    def build(cls, tokenizer: Any, numbers: RowNumbers | None) -> "_TokenTable":
        behaviors = {name: tokenizer.behavior_token_id(name) for name in tokenizer.behaviors}
        return cls(tokenizer.item_index, tokenizer.item_tokens, tokenizer.num_levels, behaviors, numbers,
                   int(tokenizer.code_token_offsets[0]), tokenizer.pad_token_id, pa.array(list(behaviors), pa.string()),
                   np.array([*behaviors.values(), UNKNOWN], dtype=np.int64))

    def items(self, values: Sequence[Any]) -> np.ndarray:
        """Item rows, UNKNOWN when absent; ids are looked up as str(id), as the tokenizer does."""
        return _lookup(self.index.rows, values, self._string_rows)

    def _string_rows(self, ids: pa.Array) -> np.ndarray:
        """`index.rows` of an Arrow string array, searched in its own buffers: no Python string is made."""
        offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64 if pa.types.is_large_string(ids.type) else np.int32)
        data = ids.buffers()[2]
        return self.index.rows_of_buffer(b"" if data is None else data, offsets[ids.offset:ids.offset + len(ids) + 1])

    def behaviors(self, values: Sequence[Any]) -> np.ndarray:
        """Behavior token ids, UNKNOWN when absent; an Arrow string array is matched against the few names by
        Arrow's hash lookup, without a dictionary of its own."""
        if isinstance(values, pa.Array) and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            found = pc.index_in(values, value_set=self.behavior_names.cast(values.type))
            return self.behavior_ids[pc.fill_null(found, len(self.behavior_tokens)).to_numpy()]
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


def _is_list(values: pa.Array) -> bool:
    return pa.types.is_list(values.type) or pa.types.is_large_list(values.type)


def _column(table: pa.Table, name: str) -> pa.Array:
    """One column as one array (`combine_chunks` copies even a single chunk's buffers into a new array)."""
    column = table[name]
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _window(lists: pa.ListArray, offsets: np.ndarray, lengths: np.ndarray, start: np.ndarray,
            end: np.ndarray) -> pa.Array:
    """The values [start, end) of every list (`lengths` long), in order: a slice of the values where the windows
    are the whole lists (rows prepared within max_history), else a take."""
    if not start.any() and np.array_equal(end, lengths):
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
    found: bool = False  # from the number columns: behaviors and requested are token ids, items and targets rows

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
    def gather_arrow(cls, batch: pa.Table | pa.RecordBatch, max_history: int | None,
                     numbers: RowNumbers | None = None) -> "_Batch":
        """The same from an Arrow batch of one split's rows, without turning them into Python objects; with
        `numbers` and rows that carry number columns, behaviors and items are token ids and item rows gathered
        from the numbers (the name and id columns are not read)."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        present = set(table.column_names)
        if "items" in present:
            window = None if max_history is None else max_history + 1
            names, evaluation = ["behaviors", "items"], False
        elif "target_items" in present:
            names, window, evaluation = ["history_behaviors", "history_items", "target_behavior", "target_items"], \
                max_history, True
        else:
            nothing = np.zeros(0, dtype=np.int64)
            return cls([], [], nothing, nothing.astype(bool), [], [], nothing, dict.fromkeys(table.column_names))
        found = numbers is not None and all(NUMBER_COLUMNS[name] in present for name in names)
        if found:
            numbers.check(table, names)
            names = [NUMBER_COLUMNS[name] for name in names]
        behaviors, items = (_column(table, name) for name in names[:2])
        behavior_offsets, item_offsets = behaviors.offsets.to_numpy(), items.offsets.to_numpy()
        behavior_lengths, item_lengths = np.diff(behavior_offsets), np.diff(item_offsets)
        end = np.minimum(behavior_lengths, item_lengths)  # pairs, as zip() makes them
        start = np.zeros_like(end) if window is None else end - np.minimum(end, window)
        behaviors, items = (_window(lists, offsets, lengths, start, end) for lists, offsets, lengths in (
            (behaviors, behavior_offsets, behavior_lengths), (items, item_offsets, item_lengths)))
        requested, targets, target_counts = [], [], np.zeros(0, dtype=np.int64)
        if evaluation:
            requested = _column(table, names[2])
            lists = _column(table, names[3])
            offsets = lists.offsets.to_numpy()
            targets, target_counts = lists.values.slice(offsets[0], offsets[-1] - offsets[0]), np.diff(offsets)
        if found:
            behaviors = numbers.gather(numbers.behaviors, behaviors.to_numpy(), "behavior")
            items = numbers.gather(numbers.items, items.to_numpy(), "item")
            requested, targets = ((numbers.gather(numbers.behaviors, requested.to_numpy(), "behavior"),
                                   numbers.gather(numbers.items, targets.to_numpy(), "item"))
                                  if evaluation else (numbers.behaviors[:0], numbers.items[:0]))
        return cls(behaviors, items, (end - start).astype(np.int64), np.full(len(end), evaluation), requested,
                   targets, target_counts.astype(np.int64), None, found)

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
    (histories of mixed length); the loss and its gradients are those of the padded batch. `numbers`
    (`RowNumbers.of(tokenizer, prepared.item_ids, prepared.metadata["behaviors"])`) lets Arrow batches of that
    prepared folder be collated from their number columns; the outputs are the same as from their names and ids, and
    numbers that are not this tokenizer's or not the rows' ids are refused (`RowNumbers.fits`, `RowNumbers.check`).
    `score_repeats=False` leaves out of a training row's loss the codes of every interaction whose item the row holds
    earlier (a repeat): the model then learns where a user goes next among items not yet in the history, the cases
    a repeat rule cannot answer (evaluation rows are scored as always).
    """

    def __init__(
        self,
        tokenizer: Any,
        max_history: int | None = None,
        on_unknown: str = "raise",
        pad_to_multiple_of: int | None = None,
        pack: bool = False,
        numbers: RowNumbers | None = None,
        score_repeats: bool = True,
    ) -> None:
        if on_unknown not in ("raise", "skip"):
            raise ValueError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")
        if max_history is not None and max_history < 0:
            raise ValueError(f"max_history must be None or >= 0, got {max_history}")
        self.tokenizer, self.max_history, self.on_unknown = tokenizer, max_history, on_unknown
        self.pad_to_multiple_of, self.pack, self.score_repeats = pad_to_multiple_of, pack, score_repeats
        if numbers is not None and not numbers.fits(tokenizer):
            raise ConfigurationError("numbers: built for another tokenizer, whose item rows or behavior tokens are not "
                                     f"this one's ({len(tokenizer.item_index)} items, behaviors "
                                     f"{list(tokenizer.behaviors)}); build them with RowNumbers.of(this tokenizer, ...)")
        self.numbers = numbers
        self._table: _TokenTable | None = None

    def _token_table(self) -> _TokenTable:
        """Built on first use (the tokenizer's item index is fixed once it is constructed)."""
        if self._table is None:
            self._table = _TokenTable.build(self.tokenizer, self.numbers)
        return self._table

    def __call__(self, rows: Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch) -> dict[str, torch.Tensor]:
        """Rows as the Trainer's DataLoader hands them over, or one Arrow batch of a split's rows, which
        the DataLoader fetches without making Python objects:
        `DataLoader(split.with_format("arrow"), batch_size=None, sampler=BatchSampler(...))`."""
        return self._collate(rows, by_numbers=True)

    def _collate(self, rows: Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch,
                 by_numbers: bool) -> dict[str, torch.Tensor]:
        table = self._token_table()
        if isinstance(rows, (pa.Table, pa.RecordBatch)):
            batch = _Batch.gather_arrow(rows, self.max_history, table.numbers if by_numbers else None)
        else:
            batch = _Batch.gather(rows, self.max_history)
        if batch.found:
            behaviors, requested, items, targets = batch.behaviors, batch.requested, batch.items, batch.targets
        else:
            behaviors, requested = table.behaviors(batch.behaviors), table.behaviors(batch.requested)
            items, targets = _split(table.items(_joined(batch.items, batch.targets)), len(batch.items))
        known, known_targets = (behaviors != UNKNOWN) & (items != UNKNOWN), targets != UNKNOWN
        if not (known.all() and known_targets.all() and (requested != UNKNOWN).all()):  # else nothing to drop
            strict = self.on_unknown == "raise"  # an unknown requested behavior raises either way
            bad = (~known & strict, requested == UNKNOWN, ~known_targets & strict)
            if batch.found and any(found.any() for found in bad):
                return self._collate(rows, by_numbers=False)  # the ids, to name the first unknown one
            self._raise_first_unknown(batch, *bad)
            behaviors, items, targets = behaviors[known], items[known], targets[known_targets]
        if batch.bad_row is not None:
            raise ValueError(f"row has neither training nor evaluation columns: {sorted(batch.bad_row)}")
        ids, lengths, first, repeats = _examples(table, batch, behaviors, items, requested, targets, known,
                                                 known_targets, self.tokenizer.pad_token_id, self.pad_to_multiple_of,
                                                 self.score_repeats)
        if self.pack:
            rows, columns = _pack_rows(lengths, ids.shape[1])
            if rows.max() + 1 < len(lengths):  # packing saves whole rows of padding
                return self._packed(ids, lengths, first, rows, columns, repeats)
        return self._pad(ids, lengths, first, repeats)

    def _labels(self, ids: np.ndarray, scored: np.ndarray | None) -> np.ndarray:
        """The ids where `scored` (None: everywhere) holds and the token is a code (the only tokens the LM loss
        scores), else IGNORE_INDEX; numpy for the arithmetic: tiny torch ops stall when the intra-op pool competes
        for busy cores."""
        code = ids >= self._token_table().code_start
        return np.where(code if scored is None else code & scored, ids, IGNORE_INDEX)

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

    def _pad(self, ids: np.ndarray, lengths: np.ndarray, first: np.ndarray,
             repeats: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """The outputs of right-padded examples (`ids`: tokens first, pads after). Labels: an example's codes from
        its `first` position on, but not the tokens `repeats` marks; of evaluation examples alone, the K target
        codes that end each example, written at their places instead of masking the whole batch."""
        attention = np.empty(ids.shape, dtype=np.int64)  # written as int64 by the comparison itself: no bool copy
        np.less(np.arange(ids.shape[1]), lengths[:, None], out=attention, casting="unsafe")
        if first.all():  # evaluation examples only: each scores its last K tokens, the target's codes
            labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
            examples, columns = np.arange(len(ids))[:, None], first[:, None] + np.arange(self.tokenizer.num_levels)
            labels[examples, columns] = ids[examples, columns]
        else:
            table = self._token_table()
            scored = attention.astype(bool) if table.pad_token_id >= table.code_start else None  # a pad below the
            # codes never scores
            if first.any():
                later = np.arange(ids.shape[1]) >= first[:, None]
                scored = later if scored is None else scored & later
            if repeats is not None:
                scored = ~repeats if scored is None else scored & ~repeats
            labels = self._labels(ids, scored)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(attention),
                "labels": torch.from_numpy(labels)}

    def _packed(self, ids: np.ndarray, lengths: np.ndarray, first: np.ndarray, rows: np.ndarray,
                columns: np.ndarray, repeats: np.ndarray | None) -> dict[str, torch.Tensor]:
        """The right-padded examples `ids` laid end to end, each in its row of `rows` from its column of
        `columns`, `position_ids` restarting at every example and no attention_mask: that is how the model (and
        Transformers' mask utilities) recognise packed rows, keeping attention and the cross-level rule inside
        each example.

        A row's unused tail is padding that starts a "sequence" of its own (position 0), so no real token
        reads it. Labels need no boundary marks: every example starts with a behavior token, never scored,
        so the loss's one-token shift never scores a token of one example from the end of the one before.
        Indices by repeats over the real tokens, not a mask over the padded ones (a quarter of them are real in a
        training batch).
        """
        width, num_rows = _width(lengths, self.pad_to_multiple_of), int(rows.max()) + 1
        starts = np.cumsum(lengths) - lengths  # of each example among the real tokens
        real = np.arange(int(lengths.sum()))
        position = real - np.repeat(starts, lengths)
        target = real + np.repeat(rows * width + columns - starts, lengths)
        source = real + np.repeat(np.arange(len(lengths)) * ids.shape[1] - starts, lengths)
        packed = np.full((num_rows, width), self.tokenizer.pad_token_id, dtype=np.int64)
        used = np.bincount(rows, weights=lengths, minlength=num_rows).astype(np.int64)
        position_ids = np.maximum(np.arange(width) - used[:, None], 0)  # each tail: its own sequence from 0
        packed.ravel()[target] = np.take(ids.ravel(), source)  # take: faster than a fancy-index read
        position_ids.ravel()[target] = position
        scored = None  # a training batch scores every code, and a pad below the codes never scores
        if first.any() or repeats is not None or self.tokenizer.pad_token_id >= self._token_table().code_start:
            scored = np.zeros((num_rows, width), dtype=bool)
            kept = position >= np.repeat(first, lengths)
            scored.ravel()[target] = kept if repeats is None else kept & ~np.take(repeats.ravel(), source)
        return {"input_ids": torch.from_numpy(packed), "position_ids": torch.from_numpy(position_ids),
                "labels": torch.from_numpy(self._labels(packed, scored))}


def _pack_rows(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and first column of each example when packed first-fit decreasing into rows of `width` tokens (the
    first row with room, longest example first, ties in batch order). Placed a run of equal lengths at a time,
    not an example at a time (a Python step per example was most of a packed batch's cost): first-fit puts the
    examples of a run into the rows in order, each row taking as many as its room holds, since the rows before
    one that took an example had no room for that length then and have none now. Two shortcuts give the same
    rows: an example longer than half a row opens a row of its own (every row before it holds a longer one), and
    a row without room for the shortest example is never searched again."""
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    half = int(np.count_nonzero(ordered * 2 > width))
    room = (width - ordered[:half]).tolist()  # free tokens of each row
    rows = list(range(half))  # of each example, in `order`
    columns = [0] * half
    rest = ordered[half:]
    ends = (np.flatnonzero(np.diff(rest)) + 1).tolist() + [rest.size] if rest.size else []
    sizes = rest[[0, *ends[:-1]]].tolist() if ends else []
    live, previous = 0, 0  # rows before `live` have no room for the shortest example
    for size, end in zip(sizes, ends):
        count, previous = end - previous, end
        while live < len(room) and room[live] < sizes[-1]:
            live += 1
        for row in range(live, len(room)):
            free = room[row]
            if free >= size:
                taken = min(count, free // size)
                rows += [row] * taken
                columns += range(width - free, width - free + taken * size, size)
                room[row] = free - taken * size
                count -= taken
                if not count:
                    break
        while count:
            taken = min(count, width // size)
            rows += [len(room)] * taken
            columns += range(0, taken * size, size)
            room.append(width - taken * size)
            count -= taken
    placed = np.empty((2, len(lengths)), dtype=np.int64)
    placed[:, order] = rows, columns
    return placed[0], placed[1]


def _width(lengths: np.ndarray, multiple: int | None) -> int:
    width = int(lengths.max())
    return -(-width // multiple) * multiple if multiple else width


def _examples(
    table: _TokenTable, batch: _Batch, behaviors: np.ndarray, items: np.ndarray, requested: np.ndarray,
    targets: np.ndarray, known: np.ndarray, known_targets: np.ndarray, pad_token_id: int, multiple: int | None,
    score_repeats: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Every example right-padded (`[examples, width]` token ids, in row order; a row's targets in order), their
    lengths and first scored positions; without `score_repeats`, also where the tokens of an interaction whose item
    its row holds earlier lie (None when there are none: nothing to leave out).

    An example is its row's history (the kept interactions as `[beh, c1..cK]` blocks), then, for each kept
    target of an evaluation row, the requested-behavior token and the target's codes. The histories are padded
    once per row; an evaluation row's examples are copies of its padded history with their own K + 1 tokens
    written after it, so the history of a row with many targets is laid out once.
    """
    levels = table.num_levels
    rows = len(batch.counts)
    kept = batch.counts if known.all() else np.bincount(batch.interaction_rows[known], minlength=rows)
    history = kept * (levels + 1)
    per_row = history > 0
    if batch.evaluation.any():
        per_row = np.where(batch.evaluation, np.bincount(batch.target_rows[known_targets], minlength=rows), per_row)
    example_row = np.repeat(np.arange(rows), per_row)
    if not example_row.size:
        raise ValueError("no example left in this batch (all interactions unknown to the tokenizer?)")
    evaluation = batch.evaluation[example_row]
    lengths = history[example_row] + evaluation * (levels + 1)
    width = _width(lengths, multiple)
    row_width = max(width, int(history.max()))  # an evaluation row whose targets were all skipped may be longer
    padded = np.full((rows, row_width), pad_token_id, dtype=np.int64)
    blocks = np.concatenate([behaviors[:, None], table.item_tokens(items)], axis=1).ravel()
    places = np.arange(blocks.size) + np.repeat(np.arange(rows) * row_width - np.cumsum(history) + history, history)
    padded.ravel()[places] = blocks  # each row's tokens from its column 0
    repeats = None
    if not score_repeats and not batch.evaluation.all():
        repeated = _repeated(np.repeat(np.arange(rows), kept), items)
        if repeated.any():
            repeats = np.zeros(padded.shape, dtype=bool)
            repeats.ravel()[places] = np.repeat(repeated, levels + 1)
    if row_width == width and example_row.size == rows:  # every row one example (training rows): as they lie
        ids = padded
    else:
        ids = padded[example_row, :width] if row_width > width else padded[example_row]
        if repeats is not None:
            repeats = repeats[example_row, :width]
    suffixes = np.flatnonzero(evaluation)
    if suffixes.size:  # the requested behavior and the target's codes after each evaluation example's history
        request = (np.cumsum(batch.evaluation) - 1)[example_row[suffixes]]
        columns = history[example_row[suffixes], None] + np.arange(levels + 1)
        ids[suffixes[:, None], columns] = np.concatenate([requested[request, None], table.item_tokens(targets)],
                                                         axis=1)
    if repeats is not None and suffixes.size:  # an evaluation example scores its target, repeat or not
        repeats[suffixes] = False
    return ids, lengths, np.where(evaluation, history[example_row] + 1, 0), repeats


def _repeated(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per interaction (row numbers and item keys in row order): whether an earlier interaction of its row has the
    same item."""
    keys = rows.astype(np.int64) * (int(items.max()) + 1) + items
    repeated = np.ones(len(keys), dtype=bool)
    repeated[np.unique(keys, return_index=True)[1]] = False  # the first of each (row, item)
    return repeated
