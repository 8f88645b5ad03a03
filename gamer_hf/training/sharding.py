"""Each process of a multi-process run trains on its own shard of the training split.

Left alone, the Trainer hands every process the whole split and accelerate deals batches out of one
global permutation, so every process indexes (and pages in) all of the rows. Here each process takes
a contiguous shard with `datasets.distributed.split_dataset_by_node` (still memory-mapped Arrow,
read by that process only) and shuffles within it every epoch; the data loader accelerate builds
is then told not to shard it a second time. The shards are cut to one length (the split's last
rows, fewer than the number of processes, sit out), because DDP processes must take the same
number of steps in an epoch or the last collective waits forever.

A map-style shard rather than an `IterableDataset`: it keeps an exact length (epochs, the plan, the
learning-rate schedule), a full shuffle, and resuming mid-epoch, at the cost of one index per row.
"""

from __future__ import annotations

import datasets
from accelerate.data_loader import BatchSamplerShard
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from transformers import Trainer

from ..errors import DataError

__all__ = ["ProcessShardTrainer", "process_shard", "rows_per_process"]


def rows_per_process(rows: int, num_processes: int) -> int:
    """Training rows each process reads in an epoch: the same count for all of them."""
    return rows // num_processes


def process_shard(split: datasets.Dataset, rank: int, num_processes: int) -> datasets.Dataset:
    """Process `rank`'s rows of `split` (all of it for one process), as long as every other process's."""
    if num_processes == 1:
        return split
    rows = rows_per_process(len(split), num_processes)
    if rows == 0:
        raise DataError(f"the training split has {len(split)} rows, fewer than the {num_processes} processes "
                        "launched: train with fewer processes")
    return split_dataset_by_node(split.select(range(rows * num_processes)), rank=rank, world_size=num_processes)


class ProcessShardTrainer(Trainer):
    """A Trainer whose `train_dataset` is already this process's shard (`process_shard`)."""

    def get_train_dataloader(self) -> DataLoader:
        loader = super().get_train_dataloader()
        sampler = getattr(loader, "batch_sampler", None)
        if isinstance(sampler, BatchSamplerShard):  # accelerate's second sharding: pass every batch through as it is
            sampler.num_processes, sampler.process_index, sampler.even_batches = 1, 0, False
        return loader
