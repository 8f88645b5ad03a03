"""Out-of-core `prepare` on DuckDB: logs far larger than memory, the same prepared splits.

Steps, each in bounded memory, everything temporary inside the output's staging folder (so a
failure leaves nothing and the old output untouched):

1. read: the source (CSV/TSV[.gz], Parquet, a folder of Parquet shards) streams in chunks
   through the format's table converter and `events.check_rows`, the per-row rules the in-memory
   path runs, with the file's timestamp unit decided first from every chunk's
   `TimestampProfile` (a first pass, only when the unit is detected). Surviving rows go to
   Parquet with their file, row and source order; drops are counted per file.
2. global steps in SQL (DuckDB, `memory_limit`, spilling to disk): duplicates (the first in
   source order stays), the canonical order (users by first appearance, then time, then source
   order), the min_user_events and k-core filters, and user / item numbers by first appearance,
   exactly as the in-memory path orders and numbers them.
3. per-user steps: the sorted events stream back in blocks of whole users through
   `build.build_splits` (sessions, protocol, sequences, augmentation with its stream offset),
   the one implementation both engines use; blocks go straight into the shards of the DatasetDict
   `load_prepared` memory-maps (`shards.DatasetDictWriter`: no mapped copy, so no split's size in RSS).

DuckDB rather than Polars' streaming engine or pyarrow datasets: its sort, window and
hash-aggregate operators spill to disk under a memory limit (the canonical sort and duplicate
search are global), and it reads and writes Parquet (local or object storage) natively.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import ConfigurationError
from .arrays import EventArrays
from .behaviors import BehaviorSpec, BehaviorTable
from .build import add_stats, build_splits, plan_splits
from .checks import TimestampProfile
from .events import (
    DUPLICATE_HINT,
    DUPLICATE_REASON,
    OnInvalid,
    RawEvents,
    _Checker,
    behavior_table,
    check_rows,
    decide_time_unit,
    describe_duplicate,
    duplicate_policy,
)
from .prepare import (
    MEMORY_LIMIT,
    PreparedData,
    load_prepared,
    prepared_metadata,
    require_events,
    staged_output,
    write_prepared_files,
)
from .formats import (
    TAOBAO_COLUMNS,
    _unit_option,
    detect_format,
    gamer_events,
    gamer_events_file,
    plain_events,
    retailrocket_events,
    taobao_events,
    tmall_events,
)
from .report import DataValidationError, DropReport
from .shards import DatasetDictWriter
from .tables import iter_table_chunks, read_table, timestamp_numbers

__all__ = ["prepare_out_of_core", "reads_in_chunks", "CHUNKED_FORMATS"]

logger = logging.getLogger(__name__)

CHUNKED_FORMATS = ("events", "gamer", "taobao", "retailrocket", "tmall")
CHUNK_BYTES = 16 << 20  # of CSV text per chunk (about 400,000 events)
# Arrow's streaming CSV reader reads up to 32 blocks ahead in the background: 32 x 16 MiB held 340 MiB at 10M
# events (a 1M-event file has only 4 blocks). Blocks of an eighth of a chunk, joined, bound it at 64 MiB.
BLOCKS_PER_CHUNK = 8
BLOCK_EVENTS = 1 << 19  # events per block of whole users in step 3


def reads_in_chunks(path: Path, format: str) -> bool:
    """Whether the out-of-core engine can read this source (its format has a chunk converter)."""
    try:
        return (detect_format(path) if format == "auto" else format) in CHUNKED_FORMATS
    except DataValidationError:
        return False


@dataclass
class SourceInfo:
    """What metadata.json records of the source (the in-memory path reads it off its EventLog)."""

    source: str
    format: str
    time_resolution: str
    time_unit: str | None
    time_unit_detected: bool
    items: pd.DataFrame | None = None
    item_index: None = None


@dataclass
class _Source:
    path: Path
    convert: Callable[[pa.Table, str], RawEvents]
    column_names: list[str] | None = None
    items_file: Path | None = None  # a catalogue file beside the events (gamer folders), read when saving
    cached: list[tuple[str, int, Path]] | None = None  # (file, row, Arrow file) of chunks already parsed once

    def tables(self) -> Iterator[tuple[str, int, pa.Table]]:
        """(file, first row, table as read) of every chunk: parsed from the source, or from the cache once."""
        if self.cached is None:
            blocks = iter_table_chunks(self.path, column_names=self.column_names,
                                       chunk_bytes=max(1, CHUNK_BYTES // BLOCKS_PER_CHUNK))
            yield from _joined(blocks)
            return
        for file, row, path in self.cached:
            with pa.memory_map(str(path)) as mapped:
                table = pa.ipc.open_file(mapped).read_all()
            path.unlink()  # the mapping stays valid; the disk space goes when the chunk does
            yield file, row, table

    def chunks(self) -> Iterator[tuple[RawEvents, int]]:
        for file, row, table in self.tables():
            yield self.convert(table, file), row


def _joined(blocks: Iterator[tuple[str, int, pa.Table]]) -> Iterator[tuple[str, int, pa.Table]]:
    """Up to BLOCKS_PER_CHUNK consecutive blocks of one file joined into a chunk (file, first row, table)."""
    parts: list[pa.Table] = []
    file, row = "", 0
    for block_file, block_row, table in blocks:
        if parts and (block_file != file or len(parts) == BLOCKS_PER_CHUNK):
            yield file, row, pa.concat_tables(parts)
            parts = []
        if not parts:
            file, row = block_file, block_row
        parts.append(table)
    if parts:
        yield file, row, pa.concat_tables(parts)


def _source(path: Path, format: str, options: dict[str, Any]) -> _Source:
    name = detect_format(path) if format == "auto" else format
    if name not in CHUNKED_FORMATS:
        raise ConfigurationError(f"format {name!r} is read in memory only; out of core reads {list(CHUNKED_FORMATS)} "
                                 "(pass engine='memory')")
    allowed = {"events": {"columns", "timestamp_unit", "time_unit"}, "tmall": {"year"}}.get(name, set())
    if set(options) - allowed:
        raise ConfigurationError(f"format {name!r} does not take option(s) {sorted(set(options) - allowed)}")
    if name == "events":
        unit = _unit_option(options.get("timestamp_unit", "auto"), options.get("time_unit"))
        return _Source(path, partial(plain_events, columns=options.get("columns"), timestamp_unit=unit))
    if name == "gamer":
        events_file = gamer_events_file(path)
        items_file = events_file.parent / "items.csv.gz"
        return _Source(events_file, gamer_events, items_file=items_file if items_file.is_file() else None)
    if name == "taobao":
        return _Source(path, taobao_events, column_names=TAOBAO_COLUMNS)
    if name == "tmall":
        return _Source(path, partial(tmall_events, **options))
    return _Source(path, retailrocket_events)


def _file_time_unit(source: _Source, cache: Path) -> tuple[str, bool] | None:
    """(unit, detected) of the log's timestamps, from every chunk when detected; None without times.

    Detection needs the whole file before any row is checked. The chunks it parsed are kept under
    `cache` as Arrow files (`source.cached`), so the checking pass reads them instead of parsing
    (and decompressing) the file a second time.
    """
    profile, requested, is_datetime = None, None, False
    cached: list[tuple[str, int, Path]] = []
    for file, row, table in source.tables():
        raw = source.convert(table, file)
        if "timestamp" not in raw.table.column_names:
            return None
        numbers, chunk_datetime = timestamp_numbers(raw.table["timestamp"])
        if requested is None:
            requested, is_datetime = raw.time_unit, chunk_datetime
            if requested != "auto" or is_datetime:
                break  # given, or date-times: nothing to detect
            cache.mkdir()
        part = TimestampProfile.of(numbers)
        profile = part if profile is None else profile.merge(part)
        cached.append((file, row, cache / f"{len(cached):06d}.arrow"))
        with pa.OSFile(str(cached[-1][2]), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        if requested is not None:
            source.cached = cached
    if requested is None:
        return ("s", False)  # an empty log: no times to read
    return decide_time_unit(requested, is_datetime, profile or TimestampProfile.of(np.zeros(0)))


class _Staged:
    """Parquet files of one step, written batch by batch with one schema."""

    def __init__(self, path: Path) -> None:
        self.path, self.writer = path, None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def close(self) -> bool:
        if self.writer is not None:
            self.writer.close()
        return self.writer is not None


@dataclass
class _Validated:
    """What step 1 learnt of the log, besides the rows it wrote."""

    levels: BehaviorTable
    format: str
    file: str  # how messages name the source: the file, or the folder of shards
    files: list[str]
    time_unit: tuple[str, bool] | None  # (unit, detected); None without a time column
    time_resolution: str
    has_sessions: bool
    has_chunk_items: bool


def _read_validated(source: _Source, behaviors: BehaviorSpec | None, on_invalid: OnInvalid, work: Path,
                    report: DropReport, steps: tqdm) -> _Validated:
    """Step 1: every chunk through the per-row rules into work/valid.parquet (with file, row, source order)."""
    unit = _file_time_unit(source, work / "parsed")
    valid, items = _Staged(work / "valid.parquet"), _Staged(work / "chunk_items.parquet")
    files: list[str] = []
    first: RawEvents | None = None
    levels, has_sessions, seq, item_seq = None, False, 0, 0
    rules: list[int] = []
    for raw, row in source.chunks():
        first = first or raw
        levels = levels or behavior_table(raw, behaviors)
        if raw.file not in files:
            files.append(raw.file)
        checker = _Checker(raw, on_invalid, report, row_offset=row)
        rows = check_rows(raw, levels, checker, unit)
        rules.extend(checker.record_rules)
        has_sessions = rows.sessions is not None
        n = len(rows.keep)
        columns = {
            "user_id": rows.users, "item_id": rows.items,
            "behavior": pc.index_in(rows.behaviors, value_set=pa.array(levels.names)).cast(pa.int8()),
            "timestamp": pa.array(rows.seconds if rows.seconds is not None else np.full(n, np.nan), pa.float64()),
            "src_file": pa.array(np.full(n, files.index(raw.file), dtype=np.int32)),
            "src_row": pa.array(rows.keep + row, pa.int64()),
            "seq": pa.array(np.arange(seq, seq + n), pa.int64()),
        }
        if has_sessions:
            columns["session_id"] = rows.sessions
        valid.write(pa.table(columns))
        if raw.items is not None:  # side information repeated per row: the first per item, in source order
            frame = pa.Table.from_pandas(raw.items, preserve_index=False)
            order = pa.array(np.arange(item_seq, item_seq + len(frame)), pa.int64())
            items.write(frame.append_column("_order", order))
            item_seq += len(frame)
        seq += n
        steps.set_postfix_str(f"read {seq:,} events")
    if first is None or not valid.close():
        raise DataValidationError("the log holds no events", file=str(source.path))
    report.records[:] = report.merge_repeats(rules).records
    return _Validated(levels, first.format, str(source.path) if len(files) > 1 else first.file, files, unit,
                      first.time_resolution if unit is not None else "order", has_sessions, items.close())


def prepare_out_of_core(
    events: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "auto",
    behaviors: BehaviorSpec | None = None,
    protocol: str = "session",
    max_history: int | None = 50,
    augment_copies: int = 0,
    session_by: str = "auto",
    session_gap_minutes: float = 60.0,
    target_behavior: str | None = None,
    k_core: int = 0,
    min_user_events: int = 2,
    on_invalid: OnInvalid = "raise",
    on_duplicate: str | None = None,
    seed: int = 42,
    progress: bool = True,
    format_options: dict[str, Any] | None = None,
    memory_limit: str = MEMORY_LIMIT,
    block_events: int = BLOCK_EVENTS,
) -> PreparedData:
    """`prepare(..., engine="duckdb")`: the same prepared folder, built out of core (see the module docstring)."""
    policy = duplicate_policy(on_invalid, on_duplicate)
    _check_memory_limit(memory_limit)
    source = _source(Path(events), format, dict(format_options or {}))
    with staged_output(out) as staging, tqdm(total=4, desc="prepare", unit="step", disable=not progress) as steps:
        work = staging / ".work"
        work.mkdir()
        report = DropReport()
        with _step(steps, "read"):
            log = _read_validated(source, behaviors, on_invalid, work, report, steps)
        pa.default_memory_pool().release_unused()  # the parsed chunks' pages go back before DuckDB takes its own

        with _step(steps, "sort and filter"), _Database(work, memory_limit) as db:
            db.load(has_time=log.time_unit is not None, has_sessions=log.has_sessions)
            if log.time_unit is not None and policy != "keep":
                db.drop_duplicates(log.files, log.levels, policy, report)
            db.canonical_order()
            db.filter_min_user_events(min_user_events, report, log.file)
            db.filter_k_core(k_core, report, log.file)
            require_events(db.count(), report, log.file)
            db.write_sorted()
            if log.has_chunk_items:
                db.write_first_items(work / "first_items.parquet")

        with _step(steps, "split"):
            plan = plan_splits(log.levels, protocol=protocol, session_by=session_by,
                               session_gap_minutes=session_gap_minutes, target_behavior=target_behavior,
                               has_given_sessions=log.has_sessions, time_resolution=log.time_resolution,
                               max_history=max_history, augment_copies=augment_copies, seed=seed)
            user_ids = pq.read_table(work / "users.parquet")["user_id"].combine_chunks().cast(pa.string())
            item_ids = pq.read_table(work / "items.parquet")["item_id"].combine_chunks().cast(pa.string())
            splits = DatasetDictWriter(staging / "splits", ["train", "validation", "test"])
            stats = _build_blocks(work, splits, plan, log.levels, user_ids, item_ids, block_events, log.has_sessions,
                                  steps)

        with _step(steps, "save"):
            items = None
            if source.items_file is not None:  # read now, not held through the steps; the kept items become a frame
                catalogue = read_table(source.items_file)
                kept = pc.is_in(catalogue["item_id"].cast(pa.string()), value_set=item_ids)
                items = catalogue.filter(kept).to_pandas()
                del catalogue
            elif log.has_chunk_items:
                items = pd.read_parquet(work / "first_items.parquet")
            unit, detected = log.time_unit or (None, False)
            info = SourceInfo(log.file, log.format, log.time_resolution, unit, detected, items)
            metadata = prepared_metadata(info, plan, stats, report, num_items=len(item_ids), k_core=k_core,
                                         min_user_events=min_user_events)
            shutil.rmtree(work)
            write_prepared_files(staging, metadata, item_ids, user_ids, items, None)
    return load_prepared(out)


@contextmanager
def _step(steps: tqdm, name: str) -> Iterator[None]:
    """One of the four steps: named on the progress bar, its wall time logged (INFO) for profiling."""
    steps.set_postfix_str(name)
    start = time.perf_counter()
    yield
    logger.info("prepare (duckdb): %s took %.1f s", name, time.perf_counter() - start)
    steps.update()


def _build_blocks(work: Path, splits: DatasetDictWriter, plan: Any, levels: BehaviorTable, user_ids: pa.Array,
                  item_ids: pa.Array, block_events: int, has_sessions: bool, steps: tqdm) -> dict[str, Any]:
    """Step 3: the sorted events in blocks of whole users through build_splits, appended to the split shards."""
    stats, offset, pending = None, 0, None

    def flush(block: pa.Table) -> None:
        nonlocal stats, offset
        users = block["user"].to_numpy()
        first = int(users[0])
        count = int(users[-1]) - first + 1
        given = None
        if has_sessions:
            given = pc.dictionary_encode(block["session_id"].combine_chunks()).indices.to_numpy().astype(np.int64)
        arrays = EventArrays(users - first, block["item"].to_numpy().astype(np.int64),
                             block["behavior"].to_numpy().astype(np.int64), block["timestamp"].to_numpy(),
                             user_ids.slice(first, count), item_ids, levels, given)
        tables, part = build_splits(arrays, plan, augment_offset=offset)
        offset += part["splits"]["train"]["history_events"]
        stats = add_stats(stats, part)
        splits.write(tables)
        steps.set_postfix_str(f"split {first + count:,} of {len(user_ids):,} users")

    for batch in pq.ParquetFile(work / "sorted.parquet").iter_batches(batch_size=min(1 << 18, block_events)):
        table = pa.Table.from_batches([batch])
        pending = table if pending is None else pa.concat_tables([pending, table])
        if pending.num_rows < block_events:
            continue
        users = pending["user"].to_numpy()
        cut = int(np.searchsorted(users, users[-1]))  # the last user may continue in the next batch
        if cut:
            flush(pending.slice(0, cut))
            pending = pending.slice(cut)
    if pending is not None and pending.num_rows:
        flush(pending)
    splits.close()
    return stats


def _check_memory_limit(memory_limit: str) -> None:
    """Ask DuckDB itself before reading anything, so a typo fails in one line, not after the first pass."""
    import duckdb

    try:
        duckdb.connect(config={"memory_limit": memory_limit}).close()
    except duckdb.Error as error:
        reason = str(error).split("Error: ", 1)[-1]
        raise ConfigurationError(f"memory_limit={memory_limit!r}: {reason}") from None


class _Database:
    """Step 2: the global steps as SQL on one DuckDB database file in the staging folder."""

    def __init__(self, work: Path, memory_limit: str) -> None:
        import duckdb

        self.work = work
        (work / "spill").mkdir()
        # Every result whose order counts says ORDER BY; the rest (tables, joins) need not keep their input's order,
        # which DuckDB would otherwise buffer for.
        self.db = duckdb.connect(str(work / "prepare.duckdb"), config={
            "memory_limit": memory_limit, "temp_directory": str(work / "spill"), "preserve_insertion_order": False,
        })

    def __enter__(self) -> "_Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.db.close()

    def sql(self, query: str, *params: Any) -> Any:
        start = time.perf_counter()
        result = self.db.execute(query, list(params) if params else None)
        logger.debug("prepare (duckdb): %.1f s: %s", time.perf_counter() - start, " ".join(query.split())[:120])
        return result

    def count(self) -> int:
        return self.sql("SELECT count(*) FROM c").fetchone()[0]

    def load(self, *, has_time: bool, has_sessions: bool) -> None:
        self.has_sessions = has_sessions
        self.sql(f"CREATE TABLE ev AS SELECT * FROM read_parquet('{self.work / 'valid.parquet'}')")
        (self.work / "valid.parquet").unlink()
        if not has_time:  # event order defines time: the position in the user's sequence
            self.sql("UPDATE ev SET timestamp = p.t FROM (SELECT seq, row_number() OVER (PARTITION BY user_id "
                     "ORDER BY seq) - 1 AS t FROM ev) p WHERE ev.seq = p.seq")

    def drop_duplicates(self, files: list[str], levels: BehaviorTable, policy: str, report: DropReport) -> None:
        """Every repeat (after the first in source order) of an identical event."""
        keys = "user_id, item_id, behavior, timestamp" + (", session_id" if self.has_sessions else "")
        self.sql(f"CREATE TABLE firsts AS SELECT {keys}, min(seq) AS first FROM ev GROUP BY ALL "
                 "HAVING count(*) > 1")
        self.sql("CREATE TABLE dup AS SELECT e.seq, e.src_file, e.src_row, e.user_id, e.item_id, e.behavior, "
                 f"e.timestamp FROM ev e JOIN firsts f USING ({keys}) WHERE e.seq <> f.first")
        per_file = self.sql("SELECT src_file, count(*) FROM dup GROUP BY src_file ORDER BY min(seq)").fetchall()
        for file, count in per_file:
            examples = self.sql("SELECT src_row, user_id, item_id, behavior, timestamp FROM dup WHERE src_file = ? "
                                "ORDER BY seq LIMIT 5", file).fetchall()
            values = [describe_duplicate(u, i, levels.names[b], t) for _, u, i, b, t in examples]
            if policy == "raise":
                raise DataValidationError(DUPLICATE_REASON, file=files[file], row=examples[0][0], value=values[0],
                                          count=count, hint=DUPLICATE_HINT)
            report.add(DUPLICATE_REASON, file=files[file], column=None, rows=[r[0] for r in examples],
                       values=values, count=count)
        if per_file:
            self.sql("DELETE FROM ev WHERE seq IN (SELECT seq FROM dup)")
        self.sql("DROP TABLE dup; DROP TABLE firsts")

    def canonical_order(self) -> None:
        """Position `pos` of every event: users by first appearance, then time, then source order.

        `pos` orders like the canonical order but is not contiguous: the user's first source position
        shifted past the rank inside the user (below 2**32). A window partitioned by user sorts in parallel, where
        one ordered over the whole log runs on one thread (about twice as slow at 3M events here).
        """
        self.sql("CREATE TABLE users0 AS SELECT user_id, min(seq) AS first FROM ev GROUP BY user_id")
        sessions = ", e.session_id" if self.has_sessions else ""
        self.sql(f"CREATE TABLE c AS SELECT e.user_id, e.item_id, e.behavior, e.timestamp{sessions}, "
                 "u.first::HUGEINT * 4294967296 + row_number() OVER (PARTITION BY e.user_id ORDER BY e.timestamp, "
                 "e.seq) AS pos FROM ev e JOIN users0 u USING (user_id)")
        self.sql("DROP TABLE ev")

    def filter_min_user_events(self, minimum: int, report: DropReport, file: str) -> None:
        """Users with fewer than `minimum` events leave (reported like filters.filter_min_user_events)."""
        if minimum <= 1:
            return
        self.sql(f"CREATE TABLE small AS SELECT user_id, count(*) AS n, min(pos) AS p FROM c GROUP BY user_id "
                 f"HAVING count(*) < {int(minimum)}")
        users, events = self.sql("SELECT count(*), coalesce(sum(n), 0) FROM small").fetchone()
        if users:
            examples = [r[0] for r in self.sql("SELECT user_id FROM small ORDER BY p LIMIT 5").fetchall()]
            report.add(f"{users:,} users with fewer than {minimum} events", file=file, column="user_id", rows=[],
                       values=examples, count=int(events))
            self.sql("DELETE FROM c WHERE user_id IN (SELECT user_id FROM small)")
        self.sql("DROP TABLE small")

    def filter_k_core(self, k: int, report: DropReport, file: str) -> None:
        """Iteratively keep users and items with at least `k` events (like filters.filter_k_core)."""
        if k <= 1:
            return
        before = self.count()
        self.sql("CREATE TABLE item_first AS SELECT item_id, min(pos) AS p FROM c GROUP BY item_id")
        self.sql("CREATE TABLE user_first AS SELECT user_id, min(pos) AS p FROM c GROUP BY user_id")
        self.sql("CREATE TABLE weak_users (user_id VARCHAR); CREATE TABLE weak_items (item_id VARCHAR)")
        while True:
            self.sql(f"CREATE OR REPLACE TABLE wu AS SELECT user_id FROM c GROUP BY user_id HAVING count(*) < {k}")
            self.sql(f"CREATE OR REPLACE TABLE wi AS SELECT item_id FROM c GROUP BY item_id HAVING count(*) < {k}")
            if not self.sql("SELECT (SELECT count(*) FROM wu) + (SELECT count(*) FROM wi)").fetchone()[0]:
                break
            self.sql("INSERT INTO weak_users SELECT * FROM wu; INSERT INTO weak_items SELECT * FROM wi")
            self.sql("DELETE FROM c WHERE user_id IN (SELECT user_id FROM wu) OR item_id IN (SELECT item_id FROM wi)")
        removed = before - self.count()
        if removed:
            def first(kind: str, limit: int) -> tuple[int, list[str]]:
                count = self.sql(f"SELECT count(DISTINCT {kind}_id) FROM weak_{kind}s").fetchone()[0]
                ids = self.sql(f"SELECT DISTINCT w.{kind}_id, f.p FROM weak_{kind}s w JOIN {kind}_first f "
                               f"USING ({kind}_id) ORDER BY f.p LIMIT {limit}").fetchall()
                return count, [row[0] for row in ids]

            (users, user_examples), (items, item_examples) = first("user", 3), first("item", 3)
            report.add(f"{k}-core filter: {users:,} users and {items:,} items with fewer than {k} events", file=file,
                       column="user_id,item_id", rows=[], values=user_examples + item_examples, count=removed)
        self.sql("DROP TABLE item_first; DROP TABLE user_first; DROP TABLE weak_users; DROP TABLE weak_items; "
                 "DROP TABLE IF EXISTS wu; DROP TABLE IF EXISTS wi")

    def write_sorted(self) -> None:
        """sorted.parquet (user, item numbers, behavior, timestamp[, session_id] in canonical order) and the id maps.

        The numbers are joined in by one statement and sorted by the next: in one pipeline the join's hash tables
        (every user and item id: 1M and 4M strings at Taobao's size) stay in memory beside the sort's buffers, which
        ran out of a 256MB limit at 100M events; apart, each has the limit to itself (the join's output, numbers
        only, is a table DuckDB can evict). `c` and its id strings are dropped once numbered.
        """
        for kind in ("user", "item"):
            self.sql(f"CREATE TABLE {kind}_code AS SELECT {kind}_id, row_number() OVER (ORDER BY min(pos)) - 1 AS code "
                     f"FROM c GROUP BY {kind}_id")
            self.sql(f"COPY (SELECT {kind}_id FROM {kind}_code ORDER BY code) TO '{self.work / f'{kind}s.parquet'}' "
                     "(FORMAT parquet)")
        sessions = ", c.session_id" if self.has_sessions else ""
        self.sql(f"CREATE TABLE coded AS SELECT c.pos, u.code AS user, i.code AS item, c.behavior, c.timestamp{sessions} "
                 "FROM c JOIN user_code u USING (user_id) JOIN item_code i USING (item_id)")
        self.sql("DROP TABLE c")
        self.sql(f"COPY (SELECT * EXCLUDE (pos) FROM coded ORDER BY pos) "
                 f"TO '{self.work / 'sorted.parquet'}' (FORMAT parquet, ROW_GROUP_SIZE 262144)")

    def write_first_items(self, path: Path) -> None:
        """Side information of logs repeating it per row: the first value per surviving item, in source order."""
        self.sql(f"COPY (SELECT * EXCLUDE (_order, _n) FROM (SELECT *, row_number() OVER (PARTITION BY item_id "
                 f"ORDER BY _order) AS _n FROM read_parquet('{self.work / 'chunk_items.parquet'}')) "
                 "WHERE _n = 1 AND item_id IN (SELECT item_id FROM item_code) ORDER BY _order) "
                 f"TO '{path}' (FORMAT parquet)")
