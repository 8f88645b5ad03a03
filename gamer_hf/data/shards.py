"""A `save_to_disk` DatasetDict folder written block by block, never through a mapped copy.

`DatasetDict.save_to_disk` copies Datasets memory-mapped from Arrow files, and every page it reads
stays resident (file-backed RSS) until the mapping closes: saving the out-of-core engine's splits
that way cost their whole size in RSS (about 650 MiB at 10M events, the peak of the run). Here the
blocks go straight into the final shard files through `datasets`' own `ArrowWriter`, so only one
block is in memory; the JSON files are the ones `save_to_disk` writes (pinned against it in
tests/data/test_data_shards.py), so `datasets.load_from_disk` reads the folder as if it had.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter
from datasets.fingerprint import generate_random_fingerprint
from datasets.utils.py_utils import asdict, convert_file_size_to_int

__all__ = ["SplitWriter", "DatasetDictWriter"]

# Rows per record batch in a shard. Opening a shard reads every batch's header through the mapping, and each
# read maps the pages around it: save_to_disk's 1,000-row batches left about a sixth of the splits resident
# (120 MiB at 10M events) right after writing; batches of 2^16 rows leave a few MiB.
ROWS_PER_BATCH = 1 << 16


class SplitWriter:
    """One split's folder: tables appended in order, a new shard after `max_shard_bytes` (save_to_disk's 500MB)."""

    def __init__(self, folder: Path, max_shard_bytes: int | None = None) -> None:
        self.folder = folder
        self.max_shard_bytes = max_shard_bytes or convert_file_size_to_int(datasets.config.MAX_SHARD_SIZE)
        self.features: datasets.Features | None = None
        self.shards: list[Path] = []
        self.writer: ArrowWriter | None = None
        self.shard_bytes = 0

    def write(self, table: pa.Table) -> None:
        """Append rows; the first table's schema is the split's (later tables are cast to it)."""
        if self.features is None:
            self.folder.mkdir(parents=True)
            self.features = datasets.Features.from_arrow_schema(table.schema)
        if self.writer is None or (self.shard_bytes >= self.max_shard_bytes and table.num_rows):
            self._finish_shard()
            self.shards.append(self.folder / f"part-{len(self.shards):05d}.arrow")
            self.writer, self.shard_bytes = ArrowWriter(features=self.features, path=str(self.shards[-1])), 0
        self.writer.write_table(table, writer_batch_size=ROWS_PER_BATCH)
        self.shard_bytes += table.nbytes

    def _finish_shard(self) -> None:
        if self.writer is not None:
            self.writer.finalize()
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        """Name the shards as save_to_disk does and write state.json and dataset_info.json beside them."""
        if self.features is None:
            raise ValueError(f"no table was written to {self.folder}")
        self._finish_shard()
        names = [f"data-{i:05d}-of-{len(self.shards):05d}.arrow" for i in range(len(self.shards))]
        for shard, name in zip(self.shards, names):
            shard.rename(self.folder / name)
        state = {"_data_files": [{"filename": name} for name in names], "_fingerprint": generate_random_fingerprint(),
                 "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
                 "_split": None}
        (self.folder / datasets.config.DATASET_STATE_JSON_FILENAME).write_text(json.dumps(state, indent=2,
                                                                                          sort_keys=True))
        info = asdict(datasets.DatasetInfo(features=self.features))
        (self.folder / datasets.config.DATASET_INFO_FILENAME).write_text(json.dumps(dict(sorted(info.items())),
                                                                                    indent=2))


class DatasetDictWriter:
    """Splits written side by side under one folder; `close` adds dataset_dict.json (the split names, in order)."""

    def __init__(self, folder: Path, names: list[str], max_shard_bytes: int | None = None) -> None:
        self.folder = folder
        self.splits = {name: SplitWriter(folder / name, max_shard_bytes) for name in names}

    def write(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            self.splits[name].write(table)

    def close(self) -> None:
        for split in self.splits.values():
            split.close()
        (self.folder / datasets.config.DATASETDICT_JSON_FILENAME).write_text(json.dumps({"splits": list(self.splits)}))
