"""Rows of a prepared split read in blocks with positional reads, and the block-shuffled training order.

`datasets.load_from_disk` memory-maps a split's Arrow files, and rows read at random through the mapping
fault in the pages around each row until the mapping covers the file: a training run's resident memory then
grows with the split (file-backed pages, 10x for a 10x larger log), although those pages are only page cache.
`SplitRows` reads the same files without the mapping. The split is cut into blocks of at most `block_rows`
consecutive rows inside one record batch; a block is read by one positional read of its record batch
(`pyarrow.OSFile.read_at`, `pread`: the bytes land in memory of the process's own, through the page cache as
any read does), its rows are copied out and the record batch is dropped. A record batch holds several blocks (the
out-of-core engine's, about 4), so the blocks of one record batch that a call needs, and those of the shuffle group
the sampler announced (`expect`), are cut from one read: each record batch is read once per group, not once per
block (in the process that iterates the sampler; a DataLoader worker reads once per call). At most `cache_blocks` blocks stay in
memory, the least recently used evicted first, so what the process holds is bounded by construction:
`cache_blocks x block_rows` rows and one record batch in flight, whatever the size of the split.

Random rows would read a record batch each; `BlockShuffleSampler` is the order that makes the reads cheap,
the shuffle buffer of streaming readers (datasets' `IterableDataset.shuffle`, WebDataset): each epoch a
permutation of the blocks, seeded by the run's seed and the epoch, taken `cache_blocks` blocks at a time, and
the rows of those blocks shuffled together. Each block is then read once per epoch and every row comes exactly
once. A split of at most one buffer (`cache_blocks x block_rows` rows) gets a uniform permutation of its rows;
a larger one a uniform permutation of its blocks with the rows mixed within each buffer: rows of one block stay
within one window of a buffer's rows, so a smaller buffer or larger blocks make the order less random.

The rows are a map-style dataset with an index sampler rather than an `IterableDataset`: the Trainer keeps an
exact length (epochs, the learning-rate schedule, the plan), resuming mid-epoch skips batches of indices
without reading them, and accelerate's samplers work unchanged. `__getitems__` returns an Arrow table, which
`GamerCollator` reads without Python objects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch.utils.data

from ..errors import DataError

__all__ = ["BLOCK_ROWS", "CACHE_BLOCKS", "BlockShuffleSampler", "SplitRows"]

BLOCK_ROWS = 4096  # rows per block: the unit of the shuffle (and of a read, within its record batch)
CACHE_BLOCKS = 16  # blocks held in memory: the shuffle buffer (65,536 rows; about 27 MB at 410 bytes a row)


def _layout(path: str) -> tuple[pa.Schema, list[tuple[int, int, int]]]:
    """The file's schema and (offset, length, rows) of each record batch message, from the message headers
    of the Arrow IPC stream (`datasets` writes streams, which have no footer); the memory map is closed
    before this returns, and the bodies are never touched."""
    schema, batches = None, []
    try:
        with pa.memory_map(path) as source:
            reader = pa.ipc.MessageReader.open_stream(source)
            while True:
                start = source.tell()
                try:
                    message = reader.read_next_message()
                except StopIteration:
                    break
                if message.type == "schema":
                    schema = pa.ipc.read_schema(message)
                elif message.type == "record batch" and schema is not None:
                    batches.append((start, source.tell() - start, pa.ipc.read_record_batch(message, schema).num_rows))
                else:
                    raise DataError(f"{path}: unexpected Arrow {message.type} message at byte {start} "
                                    "(a prepared split holds one schema, then record batches)")
                del message
            del reader
    except (pa.ArrowInvalid, OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable Arrow IPC stream: {error}") from error
    if schema is None:
        raise DataError(f"{path} is not a readable Arrow IPC stream: no schema message")
    return schema, batches


class SplitRows(torch.utils.data.Dataset):
    """Rows `rows` (ascending indices; default all) of a split saved by `save_to_disk` / `gamer-hf prepare`,
    read in blocks by positional reads; position i of this dataset is the split's row `rows[i]`."""

    def __init__(self, split: datasets.Dataset, rows: Sequence[int] | np.ndarray | None = None,
                 block_rows: int = BLOCK_ROWS, cache_blocks: int = CACHE_BLOCKS) -> None:
        if block_rows < 1 or cache_blocks < 1:
            raise ValueError(f"block_rows and cache_blocks must be >= 1, got {block_rows} and {cache_blocks}")
        self.files = [entry["filename"] for entry in split.cache_files]
        whole = "SplitRows reads a split as load_from_disk opens it (whole Arrow files on disk, no selection)"
        if not self.files or split._indices is not None:
            raise DataError(f"{whole}; this one has {len(self.files)} files and a selection: {split._indices is not None}")
        self.block_rows, self.cache_blocks = block_rows, cache_blocks
        layouts = [_layout(path) for path in self.files]
        self.schema = layouts[0][0]
        for path, (schema, _) in zip(self.files, layouts):
            if not schema.equals(self.schema):
                raise DataError(f"{path}: its schema differs from {self.files[0]}'s")
        # one row per record batch: file, byte offset, byte length; and where each batch's rows start
        self._batches = [(file, offset, length) for file, (_, batches) in enumerate(layouts)
                         for offset, length, _ in batches]
        counts = np.array([rows for _, batches in layouts for _, _, rows in batches], dtype=np.int64)
        self._batch_starts = np.concatenate([[0], np.cumsum(counts)])
        total = int(self._batch_starts[-1])
        if total != len(split):
            raise DataError(f"{whole}; the files of {Path(self.files[0]).parent} hold {total} rows, the split "
                            f"{len(split)}")
        self.rows = np.arange(total, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.ndim != 1 or (len(self.rows) and (self.rows[0] < 0 or self.rows[-1] >= total)) or np.any(
                np.diff(self.rows) <= 0):
            raise ValueError(f"rows must be ascending distinct indices below the split's {total} rows")
        # blocks: runs of positions in one record batch, cut every block_rows; block k = positions
        # [block_starts[k], block_starts[k + 1]) in record batch block_batch[k]
        batch_of = np.searchsorted(self._batch_starts, self.rows, side="right") - 1
        new_batch = np.flatnonzero(np.diff(batch_of)) + 1
        cuts = [np.arange(start, stop, block_rows) for start, stop in
                zip(np.concatenate([[0], new_batch]), np.concatenate([new_batch, [len(self.rows)]]))]
        starts = np.concatenate(cuts) if cuts else np.zeros(0, dtype=np.int64)
        self.block_starts = np.concatenate([starts, [len(self.rows)]]).astype(np.int64)
        self.block_batch = batch_of[starts] if len(starts) else np.zeros(0, dtype=np.int64)
        self._files: dict[int, pa.OSFile] = {}
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self.blocks_read = 0  # blocks read since construction (a block evicted and needed again is read again)
        self.batches_read = 0  # record batches read for them
        self._expected: frozenset[int] = frozenset()  # the blocks of the shuffle group being read

    @property
    def num_blocks(self) -> int:
        return len(self.block_batch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (DataLoader workers, spawn) without open files or cached blocks: each process reads its own."""
        return {**self.__dict__, "_files": {}, "_cache": OrderedDict()}

    def _read_batch(self, index: int) -> pa.RecordBatch:
        file, offset, length = self._batches[index]
        if file not in self._files:
            self._files[file] = pa.OSFile(self.files[file])
        try:
            batch = pa.ipc.read_record_batch(pa.ipc.read_message(self._files[file].read_at(length, offset)),
                                             self.schema)
        except (pa.ArrowInvalid, OSError, EOFError) as error:
            raise DataError(f"{self.files[file]}: the record batch at byte {offset} cannot be read: {error}") from error
        self.batches_read += 1
        return batch

    def expect(self, blocks: Sequence[int]) -> None:
        """The blocks the next calls will read (the sampler's shuffle group): a record batch read for one of them
        yields the others it holds too, and they are evicted last; forgotten at the first call that reads none."""
        self._expected = frozenset(int(block) for block in blocks)

    def _read_blocks(self, blocks: np.ndarray) -> None:
        """Cache `blocks` (not cached yet) and the expected blocks of the same record batches, each record batch
        read once for all of them; a block's rows are copied out, so that the record batch is freed."""
        batches = np.unique(self.block_batch[blocks])
        expected = np.array([block for block in self._expected if block not in self._cache], dtype=np.int64)
        blocks = np.union1d(blocks, expected[np.isin(self.block_batch[expected], batches)])
        for index in batches:
            batch = self._read_batch(int(index))
            for block in blocks[self.block_batch[blocks] == index]:
                start, stop = self.block_starts[block], self.block_starts[block + 1]
                local = self.rows[start:stop] - self._batch_starts[index]
                self._cache[int(block)] = pa.Table.from_batches([batch.take(pa.array(local))])
                self.blocks_read += 1

    def _block(self, block: int) -> pa.Table:
        self._cache.move_to_end(block)
        return self._cache[block]

    def __getitems__(self, positions: Sequence[int]) -> pa.Table:
        """The rows at `positions`, in that order, as one Arrow table; the blocks read stay cached."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(self.rows)):
            raise IndexError(f"positions must be in [0, {len(self.rows)}), got {positions.min()}..{positions.max()}")
        if not len(positions):
            return self.schema.empty_table()
        blocks = np.searchsorted(self.block_starts, positions, side="right") - 1
        distinct, first, inverse = np.unique(blocks, return_index=True, return_inverse=True)
        used = np.argsort(first)  # in order of first use, so that eviction drops the older blocks first
        rank = np.empty(len(distinct), dtype=np.int64)
        rank[used] = np.arange(len(distinct))
        by_block = np.argsort(rank[inverse], kind="stable")  # the positions grouped by block, in order of use
        local = (positions - self.block_starts[blocks])[by_block]
        ends = np.cumsum(np.bincount(rank[inverse], minlength=len(distinct)))
        if self._expected.isdisjoint(distinct.tolist()):  # not the group being read (an order drawn ahead): stale
            self._expected = frozenset()
        self._read_blocks(np.array([block for block in distinct[used] if block not in self._cache], dtype=np.int64))
        pieces = [self._block(int(block)).take(pa.array(local[end - count:end]))  # a take per block: cheap,
                  for block, end, count in zip(distinct[used], ends, np.diff(ends, prepend=0))]  # unlike one over
        while len(self._cache) > self.cache_blocks:  # a chunked table (which concatenates the chunks first)
            unexpected = next((block for block in self._cache if block not in self._expected), None)
            if unexpected is None:
                self._cache.popitem(last=False)
            else:  # the group's blocks not read yet stay
                del self._cache[unexpected]
        return pa.concat_tables(pieces).combine_chunks().take(pa.array(np.argsort(by_block)))

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.__getitems__([position]).to_pylist()[0]


class BlockShuffleSampler(torch.utils.data.Sampler[int]):
    """The positions of `rows` in block-shuffled order: each epoch the blocks in a permutation seeded by
    (`seed`, epoch), `rows.cache_blocks` at a time, the rows of each such group shuffled together."""

    def __init__(self, rows: SplitRows, seed: int) -> None:
        self.rows, self.seed, self.epoch = rows, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def _draw(self) -> tuple[np.random.Generator, list[np.ndarray]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.rows.num_blocks)
        return rng, [order[first:first + self.rows.cache_blocks] for first in range(0, len(order), self.rows.cache_blocks)]

    def groups(self) -> list[np.ndarray]:
        """This epoch's shuffle groups: the blocks in a permutation seeded by (seed, epoch), `cache_blocks` at a time."""
        return self._draw()[1]

    def __iter__(self) -> Iterator[int]:
        rng, groups = self._draw()
        starts = self.rows.block_starts
        for group in groups:
            self.rows.expect(group)
            positions = np.concatenate([np.arange(starts[block], starts[block + 1]) for block in group])
            yield from rng.permutation(positions).tolist()
