"""Each process of a multi-process run trains on its own rows of the training split, read in blocks.

The training split is read by `SplitRows` (positional reads of blocks of rows, a bounded cache of them; no
memory map) in `BlockShuffleSampler`'s order (a permutation of the blocks each epoch, rows shuffled within a
buffer of blocks), so the process's memory does not grow with the split. Under `accelerate launch` each
process takes a contiguous range of the rows, as `datasets.distributed.split_dataset_by_node` shards a
map-style split, and reads only its own blocks; the data loader accelerate builds is then told not to shard
it a second time. The ranges are cut to one length (the split's last rows, fewer than the number of
processes, sit out), because DDP processes must take the same number of steps in an epoch or the last
collective waits forever.
"""

from __future__ import annotations

import datasets
import numpy as np
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer

from ..data.split_rows import BlockShuffleSampler, SplitRows
from ..errors import DataError

__all__ = ["ProcessShardTrainer", "process_rows", "rows_per_process", "training_rows"]


def rows_per_process(rows: int, num_processes: int) -> int:
    """Training rows each process reads in an epoch: the same count for all of them."""
    return rows // num_processes


def process_rows(rows: int, rank: int, num_processes: int) -> np.ndarray:
    """Process `rank`'s row indices of a split of `rows` rows (all of them for one process), as many as every
    other process's: the contiguous shard `split_dataset_by_node` gives a map-style split."""
    share = rows_per_process(rows, num_processes)
    if num_processes > 1 and share == 0:
        raise DataError(f"the training split has {rows} rows, fewer than the {num_processes} processes "
                        "launched: train with fewer processes")
    return np.arange(rank * share, (rank + 1) * share, dtype=np.int64)


def training_rows(split: datasets.Dataset, rank: int, num_processes: int, block_rows: int,
                  buffer_blocks: int) -> SplitRows:
    """Process `rank`'s training rows, read in blocks of `block_rows` with `buffer_blocks` of them in memory."""
    return SplitRows(split, process_rows(len(split), rank, num_processes), block_rows, buffer_blocks)


class ProcessShardTrainer(Trainer):
    """A Trainer whose `train_dataset` is this process's `SplitRows` (`training_rows`), read in block-shuffled
    order seeded by `data_seed` (or `seed`) and the epoch."""

    def _get_train_sampler(self, train_dataset: SplitRows | None = None) -> Sampler[int]:
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return BlockShuffleSampler(train_dataset if train_dataset is not None else self.train_dataset, seed)

    def get_train_dataloader(self) -> DataLoader:
        loader = super().get_train_dataloader()
        sampler = getattr(loader, "batch_sampler", None)
        if isinstance(sampler, BatchSamplerShard):  # accelerate's second sharding: pass every batch through as it is
            sampler.num_processes, sampler.process_index, sampler.even_batches = 1, 0, False
        return loader
