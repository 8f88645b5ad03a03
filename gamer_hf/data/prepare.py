"""events -> validated log -> filters -> sessions -> split -> training sequences -> saved DatasetDict.

A prepared folder holds `save_to_disk` output of a DatasetDict (train / validation / test),
`metadata.json`, `items.json` (the item catalogue: contiguous id i -> original item id),
`users.json` (likewise for users), the same ids as one-column Arrow files (`items.ids.arrow`,
`users.ids.arrow`: what is read) and, when the source has item side information, `items.parquet`.
It is written to a temporary sibling folder and renamed into place, so readers never see half a
preparation; temporaries that a killed run left behind are removed (or, for a previous output
caught mid-swap, put back) by the next run (`clean_stale_temps`). Folders and files get the
process umask's permissions.

metadata.json keys: format_version, source, format, protocol, behaviors (name -> level, identity
order), target_behavior, time_resolution, timestamps ({unit, detected}: how source times were
read, see data.checks), sessions ({method, gap_minutes}), max_history,
augment_copies, seed, k_core, min_user_events, num_users, num_items, num_events,
events_per_behavior, num_sessions (session protocol), splits ({train: {...}, validation: {...},
test: {...}}), drop_report (list of records), id_maps ({users, items} file names), items_file,
item_index_file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from ..errors import ConfigurationError, DataError, OutputExistsError
from ..files import ordinary_permissions, read_json
from .arrays import EventArrays
from .behaviors import BehaviorSpec, BehaviorTable
from .build import SplitPlan, build_splits, plan_splits
from .checks import unit_label
from .diagnostics import diagnose
from .events import EventLog, OnInvalid
from .filters import filter_k_core, filter_min_user_events
from .id_lists import read_id_array
from .formats import read_events
from .report import DropReport
from .sessions import SessionMethod
from .splits import Protocol
from .tables import TableSource

__all__ = ["prepare", "load_prepared", "PreparedData", "LazyIds", "format_summary", "clean_stale_temps", "FORMAT_VERSION"]

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
# DuckDB's cap in the out-of-core engine. Its sorts and hash tables fill it on any log past a few million events
# (a 1M log uses about 100 MB), so it is what the sort step's peak grows by from 1M to 10M events. 256MB became
# possible once the final sort no longer held the user and item codes' join beside it (the 100M Taobao-shaped log
# ran out of memory there): 1.15x from 1M to 10M; recipes/bench/RESULTS.md, "The prepare margin" (session 8).
MEMORY_LIMIT = "256MB"
# Temporary siblings of an output `out`: `.out.prepare-tmp-HOST-PID-XXXX` (being written) and
# `.out.prepare-old-HOST-PID-XXXX` (the previous output during the swap). Another run's are stale
# once their process is gone (same host) or, from any host, after STALE_AFTER_S.
_TEMP_KINDS = ("tmp", "old")
STALE_AFTER_S = 24 * 3600.0


class LazyIds(Sequence[str]):
    """The ids of a JSON list file (users.json, items.json), read on first use and held as one Arrow string array.

    Training and evaluation never look at user ids, and a million of them as a Python list cost
    about 70 MB of memory that grows with the log (4M item ids: 300 MB); here they cost nothing until
    asked for, and then a compact Arrow array: the one-column Arrow file prepare writes beside the JSON
    (`items.ids.arrow`, memory-mapped), or, in folders prepared before it, the JSON read without Python strings
    (`id_lists.read_id_array`) unless the file needs the JSON parser. A missing JSON fails in load_prepared, a
    corrupt file on first use.
    """

    def __init__(self, path: Path) -> None:
        self.path, self._ids = path, None

    @property
    def ids(self) -> pa.Array:
        if self._ids is None and _arrow_ids_path(self.path).is_file():
            self._ids = _read_arrow_ids(_arrow_ids_path(self.path))
        if self._ids is None:  # a folder prepared before the Arrow ids
            self._ids = read_id_array(self.path)
        if self._ids is None:  # escapes or another layout: the JSON parser, and its errors
            value = _read_json(self.path)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(f"{self.path} is corrupt: not a JSON list of id strings; prepare the data again")
            self._ids = pa.array(value, pa.string())
        return self._ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self.ids[index].to_pylist()
        return self.ids[index].as_py()

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.ids), 1 << 16):
            yield from self.ids.slice(start, 1 << 16).to_pylist()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyIds):
            return self.ids.equals(other.ids)
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-like sequence semantics, as a list

    def __repr__(self) -> str:
        state = f"{len(self._ids):,} ids" if self._ids is not None else "not read yet"
        return f"LazyIds({str(self.path)!r}, {state})"


@dataclass
class PreparedData:
    """The prepared splits, their metadata, and the item catalogue (item and user ids, item side information: read
    when first used)."""

    splits: datasets.DatasetDict
    metadata: dict[str, Any]
    item_ids: Sequence[str]
    user_ids: Sequence[str]
    items_source: pd.DataFrame | Path | None = field(default=None, repr=False)  # the frame, or its file until read
    item_index: dict[str, tuple[str, ...]] | None = field(default=None, repr=False)

    @property
    def items(self) -> pd.DataFrame | None:
        """The item side information (items.parquet), read on first use: training and evaluation never look at it,
        and as a frame it costs about 130 bytes per item and column (half a gigabyte at 4M items)."""
        if isinstance(self.items_source, Path):
            self.items_source = pd.read_parquet(self.items_source)
        return self.items_source

    @property
    def behaviors(self) -> BehaviorTable:
        return BehaviorTable(self.metadata["behaviors"])

    @property
    def report(self) -> DropReport:
        return DropReport.from_list(self.metadata["drop_report"])

    def summary(self) -> str:
        """What `gamer-hf prepare` prints: the figures of `format_summary`, then the data report's findings."""
        return format_summary(self.metadata) + "\n" + diagnose(self.splits, self.metadata).format()

    def save(self, out: str | os.PathLike) -> Path:
        """Write atomically: a temporary sibling folder renamed over `out`."""
        with staged_output(out) as tmp:
            with _quiet_datasets():  # our own progress bar covers saving
                self.splits.save_to_disk(str(tmp / "splits"))
            write_prepared_files(tmp, self.metadata, self.item_ids, self.user_ids, self.items, self.item_index)
        return Path(out)


@contextmanager
def staged_output(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of `out` to write a prepared folder into; renamed over `out` on success only."""
    out = check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    tmp = _make_temp(out, "tmp")
    try:
        yield tmp
        if out.exists():
            old = _make_temp(out, "old")
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_prepared_files(folder: Path, metadata: dict[str, Any], item_ids: pa.Array | Sequence[str],
                         user_ids: pa.Array | Sequence[str], items: pd.DataFrame | None,
                         item_index: dict[str, tuple[str, ...]] | None) -> None:
    """Everything of a prepared folder but the splits: the id maps, side information and metadata.json (last)."""
    for name, ids in (("items.json", item_ids), ("users.json", user_ids)):
        if isinstance(ids, LazyIds):
            ids = ids.ids
        elif not isinstance(ids, pa.Array):  # converted once, for both files
            ids = pa.array(list(ids), pa.string())
        _write_id_list(folder / name, ids)
        _write_arrow_ids(_arrow_ids_path(folder / name), ids)
    if items is not None:
        items.to_parquet(folder / "items.parquet", index=False)
    if item_index is not None:
        _write_json(folder / "item_index.json", {k: list(v) for k, v in item_index.items()})
    _write_json(folder / "metadata.json", metadata)


def check_output(out: str | os.PathLike) -> Path:
    """Refuse an output path that is a file, lies under a file, or is a folder of other content."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"output {out} is a file, not a folder; choose a folder path for --out")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigurationError(f"output {out} lies under {parent}, which is a file; choose a folder path for --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "metadata.json").is_file():
        raise OutputExistsError(f"output {out} exists and is not a prepared-data folder; refusing to overwrite it "
                                "(choose a new or empty folder)")
    return out


def _temp_name(out: Path, kind: str) -> str:
    return f".{out.name}.prepare-{kind}-{socket.gethostname()}-{os.getpid()}-"


def _make_temp(out: Path, kind: str) -> Path:
    """A fresh temporary sibling of `out`, with the permissions the umask gives a new folder."""
    tmp = Path(tempfile.mkdtemp(prefix=_temp_name(out, kind), dir=out.parent))
    ordinary_permissions(tmp)  # mkdtemp makes 0700 folders; a prepared folder is shared like any other
    return tmp


def _is_stale(path: Path, host: str, pid: int) -> bool:
    if pid == os.getpid() and host == socket.gethostname():
        return False
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_S:
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def clean_stale_temps(out: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of `out` that killed runs of this tool left; return them.

    Only folders named by `_temp_name` count, and only once stale (their process is gone, or
    older than STALE_AFTER_S), so a concurrent run's work is never touched. A previous output
    caught between the two renames of a swap (`out` missing, the old copy complete) is renamed
    back instead of deleted.
    """
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.prepare-({'|'.join(_TEMP_KINDS)})-(.+)-(\d+)-[^-]+$")
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for path in sorted(out.parent.iterdir()):
        match = pattern.match(path.name)
        if not match or not path.is_dir() or not _is_stale(path, match.group(2), int(match.group(3))):
            continue
        previous = path / out.name
        if match.group(1) == "old" and not out.exists() and (previous / "metadata.json").is_file():
            os.replace(previous, out)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _write_json(path: Path, value: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False, indent=1 if isinstance(value, dict) else None)


def _arrow_ids_path(json_path: Path) -> Path:
    """items.json -> items.ids.arrow: the same ids as one Arrow string column, what LazyIds reads."""
    return json_path.with_name(f"{json_path.stem}.ids.arrow")


def _write_arrow_ids(path: Path, ids: pa.Array) -> None:
    table = pa.table({"id": ids})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_arrow_ids(path: Path) -> pa.Array:
    """The ids column of an `.ids.arrow` file, memory-mapped (one record batch: no copy)."""
    try:
        with pa.ipc.open_file(pa.memory_map(str(path))) as reader:
            column = reader.read_all().column("id")
    except (pa.ArrowException, KeyError, OSError) as error:
        raise DataError(f"{path} is corrupt ({error}); prepare the data again") from None
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        raise DataError(f"{path} is corrupt: its id column holds {column.type}, not strings; prepare the data again")
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()  # one batch: the mapped buffers


def _write_id_list(path: Path, ids: pa.Array) -> None:
    """A JSON list of strings written in slices (what json.dump writes), never all as Python strings at once."""
    step = 1 << 16
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[")
        for start in range(0, len(ids), step):
            part = json.dumps(ids.slice(start, step).to_pylist(), ensure_ascii=False)[1:-1]
            handle.write((", " if start else "") + part)
        handle.write("]")


def load_prepared(path: str | os.PathLike) -> PreparedData:
    """Read a folder written by `prepare(..., out=path)` / `gamer-hf prepare`."""
    path = Path(path)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise DataError(f"{path} is not a prepared-data folder (no metadata.json); run `gamer-hf prepare` first")
    metadata = _read_json(meta_file)
    if not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION:
        found = metadata.get("format_version") if isinstance(metadata, dict) else None
        raise DataError(f"{path}: prepared with format_version {found}, this gamer_hf reads {FORMAT_VERSION}; "
                        "prepare it again")
    items = path / "items.parquet" if (path / "items.parquet").is_file() else None
    item_index = None
    if (path / "item_index.json").is_file():
        item_index = {k: tuple(v) for k, v in _read_json(path / "item_index.json").items()}
    return PreparedData(
        splits=datasets.load_from_disk(str(path / "splits")),
        metadata=metadata,
        item_ids=_lazy_ids(path / "items.json"),
        user_ids=_lazy_ids(path / "users.json"),
        items_source=items,
        item_index=item_index,
    )


def _lazy_ids(path: Path) -> LazyIds:
    if not path.is_file():
        raise DataError(f"{path} is missing; {path.parent} is incomplete")
    return LazyIds(path)


def _read_json(path: Path) -> Any:
    """A JSON file of a prepared folder; a missing or corrupt one is a DataError naming it."""
    return read_json(path, error=DataError)


def prepare(
    events: TableSource | EventLog,
    *,
    format: str = "auto",
    behaviors: BehaviorSpec | None = None,
    protocol: Protocol = "session",
    out: str | os.PathLike | None = None,
    max_history: int | None = 50,
    augment_copies: int = 0,
    session_by: SessionMethod = "auto",
    session_gap_minutes: float = 60.0,
    target_behavior: str | None = None,
    k_core: int = 0,
    min_user_events: int = 2,
    on_invalid: OnInvalid = "raise",
    on_duplicate: str | None = None,
    seed: int = 42,
    progress: bool = True,
    format_options: dict[str, Any] | None = None,
    engine: str = "auto",
    memory_limit: str = MEMORY_LIMIT,
) -> PreparedData:
    """Turn an event log into train / validation / test datasets (and save them when `out` is given).

    `events` is a path, a DataFrame, a Dataset or an already-read `EventLog`. `max_history` caps
    both training sequences (max_history + 1 interactions) and evaluation prompts; None keeps all.
    `target_behavior` (loo) defaults to the unique top-level behavior. `engine`: "memory" holds
    the log in Arrow/numpy; "duckdb" prepares out of core (gamer_hf.data.outofcore, same splits,
    bounded memory, needs `out`; `memory_limit` caps DuckDB, which spills past it); "auto" picks
    DuckDB for folders of Parquet shards and files of OUT_OF_CORE_BYTES or more.
    """
    if protocol not in ("session", "loo"):
        raise ConfigurationError(f"protocol must be 'session' or 'loo', got {protocol!r}")
    if max_history is not None and max_history < 1:
        raise ConfigurationError(f"max_history must be >= 1 or None, got {max_history}")
    if out is not None:
        check_output(out)  # before the work, not after it
        clean_stale_temps(out)
    chosen = choose_engine(engine, events, format, out)
    if chosen == "duckdb":
        from .outofcore import prepare_out_of_core

        return prepare_out_of_core(
            events, out, format=format, behaviors=behaviors, protocol=protocol, max_history=max_history,
            augment_copies=augment_copies, session_by=session_by, session_gap_minutes=session_gap_minutes,
            target_behavior=target_behavior, k_core=k_core, min_user_events=min_user_events, on_invalid=on_invalid,
            on_duplicate=on_duplicate, seed=seed, progress=progress, format_options=format_options,
            memory_limit=memory_limit,
        )
    with tqdm(total=5, desc="prepare", unit="step", disable=not progress) as steps:

        steps.set_postfix_str("read")
        if isinstance(events, EventLog):
            if behaviors is not None:
                raise ConfigurationError("behaviors are fixed by the EventLog; pass them to read_events instead")
            log = events
        else:
            log = read_events(events, format, behaviors, on_invalid=on_invalid, on_duplicate=on_duplicate,
                              **(format_options or {}))
        report = DropReport(list(log.report.records))
        steps.update()

        steps.set_postfix_str("filter")
        arrays = EventArrays.from_log(log)
        arrays = filter_min_user_events(arrays, min_user_events, report, file=log.source)
        arrays = filter_k_core(arrays, k_core, report, file=log.source)
        require_events(len(arrays), report, log.source)
        steps.update()

        steps.set_postfix_str("split")
        plan = plan_splits(log.behaviors, protocol=protocol, session_by=session_by,
                           session_gap_minutes=session_gap_minutes, target_behavior=target_behavior,
                           has_given_sessions=arrays.given_sessions is not None,
                           time_resolution=log.time_resolution, max_history=max_history,
                           augment_copies=augment_copies, seed=seed)
        tables, stats = build_splits(arrays, plan)
        splits = datasets.DatasetDict({name: datasets.Dataset(table) for name, table in tables.items()})
        steps.update()

        item_ids = arrays.item_ids.to_pylist()
        metadata = prepared_metadata(log, plan, stats, report, num_items=arrays.num_items, k_core=k_core,
                                     min_user_events=min_user_events)
        items = None
        if log.items is not None:
            items = log.items[log.items["item_id"].astype(str).isin(set(item_ids))].reset_index(drop=True)
        prepared = PreparedData(splits, metadata, item_ids, arrays.user_ids.to_pylist(), items, log.item_index)
        steps.update()
        steps.set_postfix_str("save" if out is not None else "done")
        if out is not None:
            prepared.save(out)
        steps.update()
    return prepared


# File inputs at least this large go out of core with engine="auto" (when there is an output folder).
OUT_OF_CORE_BYTES = 64 << 20


def choose_engine(engine: str, events: Any, format: str, out: str | os.PathLike | None) -> str:
    """ "memory" or "duckdb" for `engine` ("auto": DuckDB for folders of shards and files of OUT_OF_CORE_BYTES)."""
    if engine not in ("auto", "memory", "duckdb"):
        raise ConfigurationError(f"engine must be 'auto', 'memory' or 'duckdb', got {engine!r}")
    if engine == "memory":
        return engine
    path = Path(events) if isinstance(events, (str, os.PathLike)) else None
    if engine == "duckdb":
        if path is None:
            raise ConfigurationError("engine='duckdb' reads files; pass the events file or folder, not an object")
        if out is None:
            raise ConfigurationError("engine='duckdb' writes its splits to disk; pass out= (CLI --out)")
        return engine
    from .outofcore import reads_in_chunks

    if path is None or out is None or not reads_in_chunks(path, format):
        return "memory"
    shards = path.is_dir() and not (path / "events.csv.gz").is_file() and not any(path.glob("*.inter.json"))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return "duckdb" if shards or size >= OUT_OF_CORE_BYTES else "memory"


def require_events(count: int, report: DropReport, source: str) -> None:
    if count == 0:
        drops = "; ".join(record.describe() for record in report.records) or "the log holds no events"
        raise DataError(f"{source}: no events left after validation and filtering ({drops}); lower "
                        "min_user_events / k_core or check the file")


def prepared_metadata(log: EventLog, plan: SplitPlan, stats: dict[str, Any], report: DropReport, *,
                      num_items: int, k_core: int, min_user_events: int) -> dict[str, Any]:
    """metadata.json of a preparation (keys in the module docstring); `log` may hold no events (out of core)."""
    return {
        "format_version": FORMAT_VERSION,
        "source": log.source,
        "format": log.format,
        "protocol": plan.protocol,
        "behaviors": plan.table.levels,
        "target_behavior": plan.target,
        "time_resolution": log.time_resolution,
        "timestamps": {"unit": log.time_unit, "detected": log.time_unit_detected},
        "sessions": plan.sessions,
        "max_history": plan.max_history,
        "augment_copies": plan.augment_copies,
        "seed": plan.seed,
        "k_core": k_core,
        "min_user_events": min_user_events,
        "num_users": stats["num_users"],
        "num_items": num_items,
        "num_events": stats["num_events"],
        "events_per_behavior": stats["events_per_behavior"],
        "num_sessions": stats["num_sessions"],
        "splits": stats["splits"],
        "drop_report": report.to_list(),
        "id_maps": {"users": "users.json", "items": "items.json"},
        "items_file": "items.parquet" if log.items is not None else None,
        "item_index_file": "item_index.json" if log.item_index is not None else None,
    }


def format_summary(metadata: dict[str, Any]) -> str:
    """The human-readable summary `gamer-hf prepare` prints."""
    splits = metadata["splits"]
    lines = [
        f"source        {metadata['source']} (format {metadata['format']}, protocol {metadata['protocol']})",
        f"behaviors     {BehaviorTable(metadata['behaviors']).describe()}; target {metadata['target_behavior']}",
        f"users         {metadata['num_users']:,}",
        f"items         {metadata['num_items']:,}",
        f"events        {metadata['num_events']:,} ("
        + ", ".join(f"{b} {n:,}" for b, n in metadata["events_per_behavior"].items()) + ")",
    ]
    times = metadata.get("timestamps") or {}
    if times.get("unit"):
        how = "detected from their magnitudes" if times["detected"] else "as given"
        lines.append(f"timestamps    {unit_label(times['unit'])} ({how})")
    if metadata["num_sessions"] is not None:
        gap = metadata["sessions"]["gap_minutes"]
        how = metadata["sessions"]["method"] + (f", {gap:g} min gap" if gap else "")
        lines.append(f"sessions      {metadata['num_sessions']:,} ({how})")
    train = splits["train"]
    lines.append(f"train         {train['rows']:,} sequences for {train['users']:,} users "
                 f"({train['augmented_rows']:,} augmented), {train['interactions']:,} interactions")
    for name in ("validation", "test"):
        cases = splits[name]
        per = ", ".join(f"{b} {n:,}" for b, n in cases["cases_per_behavior"].items() if n)
        lines.append(f"{name:<13} {cases['cases']:,} cases ({per or 'none'}); "
                     f"{cases['skipped_empty_history']:,} skipped for empty history")
    lines.append(DropReport.from_list(metadata["drop_report"]).format())
    return "\n".join(lines)
