"""Each process's training rows: contiguous, equal, disjoint shards read in blocks; resuming skips without reading."""

from __future__ import annotations

import numpy as np
import pytest
from accelerate import skip_first_batches
from torch.utils.data import DataLoader

from gamer_hf.data.prepare import load_prepared
from gamer_hf.data.split_rows import BlockShuffleSampler
from gamer_hf.errors import DataError
from gamer_hf.training.sharding import process_rows, training_rows


@pytest.mark.parametrize("rows", [12, 13, 14])
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_process_shards_are_equal_disjoint_contiguous_and_cover_all_but_the_remainder(rows, processes):
    shards = [process_rows(rows, rank, processes) for rank in range(processes)]
    assert {len(shard) for shard in shards} == {rows // processes}
    assert np.concatenate(shards).tolist() == list(range(rows - rows % processes))


def test_more_processes_than_rows_is_a_data_error():
    with pytest.raises(DataError, match="3 rows, fewer than the 4 processes"):
        process_rows(3, 0, 4)


def test_each_process_reads_its_own_rows_once_an_epoch(prepared_dir):
    train = load_prepared(prepared_dir).splits["train"]
    seen = []
    for rank in range(2):
        rows = training_rows(train, rank, 2, block_rows=8, buffer_blocks=2)
        order = list(BlockShuffleSampler(rows, seed=0))
        assert sorted(order) == list(range(len(train) // 2))
        seen.append(rows.__getitems__(order)["user_id"].to_pylist())
        assert rows.rows.tolist() == process_rows(len(train), rank, 2).tolist()
    expected = train.select(range(2 * (len(train) // 2)))["user_id"]
    assert sorted(seen[0] + seen[1]) == sorted(expected)


def test_resuming_skips_batches_without_reading_their_rows(prepared_dir):
    """What the Trainer does when it resumes mid-epoch (accelerate's skip_first_batches): the batches after the
    skipped ones are those of the uninterrupted epoch, and only they are read."""
    rows = training_rows(load_prepared(prepared_dir).splits["train"], 0, 1, block_rows=8, buffer_blocks=2)
    sampler = BlockShuffleSampler(rows, seed=3)
    sampler.set_epoch(1)
    loader = DataLoader(rows, sampler=sampler, batch_size=8, collate_fn=lambda t: t["user_id"].to_pylist())
    full = list(loader)
    assert len(full) > 6
    reads = []
    read = rows.__getitems__
    rows.__getitems__ = lambda positions: reads.append(len(positions)) or read(positions)
    assert list(skip_first_batches(loader, 5)) == full[5:]
    assert len(reads) == len(full) - 5
