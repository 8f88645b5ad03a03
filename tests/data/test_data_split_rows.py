"""SplitRows and BlockShuffleSampler: a prepared split read in blocks by positional reads, in block-shuffled order."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from torch.utils.data import BatchSampler, DataLoader

from gamer_hf.data import prepare
from gamer_hf.data.shards import DatasetDictWriter
from gamer_hf.data.split_rows import BlockShuffleSampler, SplitRows
from gamer_hf.errors import DataError

BATCH_ROWS = 97  # record batches of the written split (and 4 shard files): blocks end where they do


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """retailrocket_cml's first 1,000 users prepared in memory (augmented), the train split rewritten in record
    batches of 97 rows over several shard files, as the out-of-core engine writes them."""
    import pandas as pd

    events = pd.read_csv(data_dir / "retailrocket_cml" / "events.csv.gz", dtype={"user_id": str, "item_id": str})
    events = events[events["user_id"].isin(events["user_id"].unique()[:1000])]
    splits = prepare(events, out=tmp_path_factory.mktemp("prep") / "p", engine="memory", max_history=20,
                     behaviors="click:0,cart:1,buy:2", augment_copies=2, progress=False).splits
    out = tmp_path_factory.mktemp("written") / "splits"
    writer = DatasetDictWriter(out, ["train"], max_shard_bytes=40_000)
    table = splits["train"].data.table
    for start in range(0, len(table), BATCH_ROWS):
        writer.write({"train": table.slice(start, BATCH_ROWS)})
    writer.close()
    return out / "train"


@pytest.fixture
def split(split_dir: Path) -> datasets.Dataset:
    return datasets.load_from_disk(str(split_dir))


def test_the_split_is_several_files_of_many_record_batches(split: datasets.Dataset) -> None:
    assert len(split.cache_files) >= 3 and len(split) > 10 * BATCH_ROWS


@pytest.mark.parametrize("block_rows", [1, 40, 4096])
def test_rows_are_the_splits_rows_in_the_order_asked(split: datasets.Dataset, block_rows: int) -> None:
    rows = SplitRows(split, block_rows=block_rows, cache_blocks=3)
    assert len(rows) == len(split)
    sizes = np.diff(rows.block_starts)
    assert sizes.min() >= 1 and sizes.max() == min(block_rows, BATCH_ROWS)  # blocks never cross a record batch
    positions = np.random.default_rng(0).choice(len(split), 200, replace=False)
    positions[-1] = positions[0]  # a row asked twice comes twice
    assert rows.__getitems__(positions).to_pylist() == [split[int(p)] for p in positions]
    assert rows[5] == split[5]
    assert rows.__getitems__([]).num_rows == 0


def test_a_subset_of_rows_reads_those_rows(split: datasets.Dataset) -> None:
    chosen = np.sort(np.random.default_rng(1).choice(len(split), 150, replace=False))
    rows = SplitRows(split, chosen, block_rows=8)
    assert rows.__getitems__(np.arange(len(rows))).to_pylist() == [split[int(i)] for i in chosen]
    assert rows.num_blocks >= len(np.unique(chosen // BATCH_ROWS))


def _epoch(rows: SplitRows, seed: int = 0, epoch: int = 0) -> list[int]:
    sampler = BlockShuffleSampler(rows, seed)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize(("block_rows", "cache_blocks"), [(16, 3), (50, 1), (4096, 64)],
                         ids=["small-buffer", "one-block-buffer", "whole-split-in-one-buffer"])
def test_every_row_once_per_epoch_seeded_and_new_each_epoch(split: datasets.Dataset, block_rows: int,
                                                            cache_blocks: int) -> None:
    rows = SplitRows(split, block_rows=block_rows, cache_blocks=cache_blocks)
    first = _epoch(rows)
    assert sorted(first) == list(range(len(split)))
    assert first == _epoch(rows)  # deterministic for a seed and epoch
    assert first != _epoch(rows, epoch=1) and sorted(_epoch(rows, epoch=1)) == sorted(first)
    assert first != _epoch(rows, seed=1)
    assert first[:50] != sorted(first[:50])  # rows are shuffled within a block too


@pytest.mark.parametrize(("block_rows", "cache_blocks"), [(16, 3), (50, 1)])
def test_the_buffer_holds_at_most_its_blocks_and_reads_each_block_once_an_epoch(
        split: datasets.Dataset, block_rows: int, cache_blocks: int) -> None:
    rows = SplitRows(split, block_rows=block_rows, cache_blocks=cache_blocks)
    window = block_rows * cache_blocks
    for epoch in range(2):
        order = _epoch(rows, epoch=epoch)
        before = rows.blocks_read
        for start in range(0, len(order), 32):  # the DataLoader's batches
            rows.__getitems__(order[start:start + 32])
            assert len(rows._cache) <= cache_blocks
            assert sum(len(table) for table in rows._cache.values()) <= window
        assert rows.blocks_read - before == rows.num_blocks  # the order stays within the buffer's blocks


@pytest.mark.parametrize(("block_rows", "cache_blocks", "batch"), [(16, 3, 32), (16, 4, 7), (10, 6, 64)])
def test_a_record_batch_is_read_once_per_shuffle_group(split: datasets.Dataset, block_rows: int, cache_blocks: int,
                                                       batch: int) -> None:
    """Its blocks in one group are cut from one read, whichever batch first needs them: at most one read per pair of
    (group, record batch; a batch across two groups may serve both from one), where one read per block was made
    before; the order is the one the seed gave before."""
    rows = SplitRows(split, block_rows=block_rows, cache_blocks=cache_blocks)
    sampler = BlockShuffleSampler(rows, 0)
    order = list(sampler)
    rng = np.random.default_rng([0, 0])  # the order as drawn before: blocks, then each group's rows
    blocks = rng.permutation(rows.num_blocks)
    starts = rows.block_starts
    assert order == [int(p) for first in range(0, len(blocks), cache_blocks) for p in rng.permutation(np.concatenate(
        [np.arange(starts[b], starts[b + 1]) for b in blocks[first:first + cache_blocks]]))]
    pairs = sum(len(np.unique(rows.block_batch[group])) for group in sampler.groups())
    assert pairs < rows.num_blocks  # groups that share record batches: the case that reads less
    positions = iter(sampler)  # the sampler announces each group as the DataLoader draws its positions
    while chunk := [position for _, position in zip(range(batch), positions)]:
        assert rows.__getitems__(chunk).to_pylist() == [split[p] for p in chunk]
        assert len(rows._cache) <= cache_blocks
    assert rows.batches_read <= pairs and rows.blocks_read == rows.num_blocks


def test_the_splits_files_stay_unmapped_while_every_row_is_read(tmp_path: Path) -> None:
    """What the memory-mapped path leaves resident (the pages of the split's files) stays at what opening the
    split mapped; reading the same rows through the mapping grows it (so the check can fail). The split: 4,000
    rows of 300 items each (about 10 MB) in record batches of 1,000 rows, so that opening it touches little."""
    smaps = Path("/proc/self/smaps")
    if not smaps.is_file():
        pytest.skip("needs /proc/self/smaps (Linux)")
    rng = np.random.default_rng(0)
    writer = DatasetDictWriter(tmp_path / "big", ["train"])
    for start in range(0, 4000, 1000):
        items = [[f"item-{i}" for i in rng.integers(0, 10**6, 300)] for _ in range(1000)]
        writer.write({"train": pa.table({"user_id": [f"u{start + i}" for i in range(1000)], "items": items})})
    writer.close()
    split = datasets.load_from_disk(str(tmp_path / "big" / "train"))
    folder = f"{(tmp_path / 'big').resolve()}/"

    def resident_kib() -> int:
        total, inside = 0, False
        for line in smaps.read_text().splitlines():
            fields = line.split()
            if "-" in fields[0] and len(fields) > 4:
                inside = len(fields) > 5 and fields[5].startswith(folder)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
        return total

    opened = resident_kib()
    rows = SplitRows(split, block_rows=64, cache_blocks=2)
    order = _epoch(rows)
    for start in range(0, len(order), 64):
        rows.__getitems__(order[start:start + 64])
    assert resident_kib() == opened
    for start in range(0, len(order), 64):
        split.__getitems__(order[start:start + 64])
    assert resident_kib() > opened + 5000  # most of the file's 10 MB


def test_bad_rows_and_selected_splits_are_refused(split: datasets.Dataset) -> None:
    with pytest.raises(ValueError, match="ascending distinct indices"):
        SplitRows(split, [3, 2])
    with pytest.raises(ValueError, match="ascending distinct indices"):
        SplitRows(split, [0, len(split)])
    with pytest.raises(DataError, match="no selection.*a selection: True"):
        SplitRows(split.select([0, 2]))
    with pytest.raises(DataError, match=r"no selection.* hold \d+ rows, the split 2$"):  # a slice of the first file
        SplitRows(split.select([0, 1]))
    with pytest.raises(ValueError, match="block_rows and cache_blocks must be >= 1"):
        SplitRows(split, block_rows=0)
    with pytest.raises(IndexError, match="positions must be in"):
        SplitRows(split).__getitems__([len(split)])


def test_a_file_damaged_after_opening_is_a_data_error_naming_it(split_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "train"
    shutil.copytree(split_dir, copy)
    rows = SplitRows(datasets.load_from_disk(str(copy)))
    last = sorted(copy.glob("*.arrow"))[-1]
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(DataError, match=f"{last.name}: the record batch at byte"):
        rows.__getitems__([len(rows) - 1])


def test_workers_collate_the_same_batches_as_the_main_process(split: datasets.Dataset) -> None:
    rows = SplitRows(split, block_rows=16, cache_blocks=3)

    def batches(workers: int) -> list[list[str]]:
        loader = DataLoader(rows, batch_sampler=BatchSampler(BlockShuffleSampler(rows, 0), 32, False),
                            collate_fn=lambda table: table["user_id"].to_pylist(), num_workers=workers)
        return list(loader)

    assert batches(2) == batches(0)
