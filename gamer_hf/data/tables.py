"""Load any tabular source as an Arrow table, and coerce its id and time columns exactly.

CSV-like files are read with every column as a string so that ids such as ``00123`` keep their
leading zeros; numbers are parsed later, column by column, where a failure can name its row.
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from .report import DataValidationError

__all__ = [
    "TableSource",
    "read_table",
    "source_label",
    "require_columns",
    "id_strings",
    "read_header",
    "timestamp_numbers",
    "table_files",
    "iter_table_chunks",
]

TableSource = Union[str, os.PathLike, pd.DataFrame, "datasets.Dataset", pa.Table]  # noqa: F821

_TAB_SUFFIXES = {".tsv", ".inter", ".tab"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


def source_label(source: Any) -> str:
    """How messages name a source: its path, or the kind of in-memory object."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _suffixes(path: Path) -> list[str]:
    parts = [s.lower() for s in path.suffixes]
    return parts[:-1] if parts and parts[-1] in {".gz", ".bz2", ".zst", ".xz"} else parts


def read_header(path: Path, delimiter: str | None = None) -> list[str]:
    """Column names of a delimited file's first line, parsed as CSV (quoted names lose their quotes).

    Without `delimiter` a line holding a tab and no comma is taken as tab-separated.
    """
    _require_file(path)
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            chunk = stream.read(1 << 16).decode("utf-8-sig", errors="replace")
    except (OSError, pa.ArrowInvalid) as error:
        raise _unreadable(path, error) from None
    line = chunk.splitlines()[0] if chunk else ""
    sep = delimiter or ("\t" if "\t" in line and "," not in line else ",")
    return [name.strip() for name in next(csv.reader([line], delimiter=sep), [])]


def _require_file(path: Path) -> None:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise DataValidationError(f"events file {what}", file=str(path), hint="check the path (CLI --events)")


def _unreadable(path: Path, error: Exception) -> DataValidationError:
    compressed = path.suffix.lower() in {".gz", ".bz2", ".zst", ".xz"}
    what = "truncated or damaged compressed file" if compressed else "unreadable file"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DataValidationError(f"{what} ({message})", file=str(path),
                               hint="the file is incomplete or corrupt; copy or download it again")


def read_table(
    source: TableSource, *, column_names: list[str] | None = None, delimiter: str | None = None
) -> pa.Table:
    """CSV/TSV (gzip etc. by suffix), Parquet, JSON Lines, a DataFrame, a Dataset or an Arrow table.

    `column_names` names the columns of a header-less CSV; otherwise the first line is the header.
    """
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pd.DataFrame):
        return pa.Table.from_pandas(source, preserve_index=False)
    if hasattr(source, "data") and hasattr(source, "features"):  # datasets.Dataset without importing it here
        return source.data.table
    path = Path(source)
    _require_file(path)
    suffixes = _suffixes(path)
    suffix = suffixes[-1] if suffixes else ""
    try:
        if suffix in _PARQUET_SUFFIXES:
            return pq.read_table(path)
        if suffix in _JSONL_SUFFIXES:
            with pa.input_stream(str(path), compression="detect") as stream:
                return pajson.read_json(stream)
    except (OSError, pa.ArrowInvalid) as error:
        raise _unreadable(path, error) from None
    read_options, parse_options, convert = _csv_options(path, suffix, column_names, delimiter)
    try:
        return pacsv.read_csv(path, read_options=read_options, parse_options=parse_options, convert_options=convert)
    except (OSError, pa.ArrowInvalid) as error:
        raise _csv_error(path, error) from None


def _csv_options(path: Path, suffix: str, column_names: list[str] | None, delimiter: str | None,
                 block_size: int = 1 << 24) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    """Every column as a string (ids keep leading zeros), the first line the header unless names are given."""
    sep = delimiter or ("\t" if suffix in _TAB_SUFFIXES else ",")
    names = column_names or read_header(path, sep)
    read_options = pacsv.ReadOptions(column_names=names, skip_rows=0 if column_names else 1, block_size=block_size)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=True, null_values=[""]
    )
    return read_options, pacsv.ParseOptions(delimiter=sep), convert


def _csv_error(path: Path, error: Exception) -> DataValidationError:
    if isinstance(error, pa.ArrowInvalid) and "compress" not in str(error).lower():
        return DataValidationError(f"cannot parse as delimited text ({error})", file=str(path))
    return _unreadable(path, error)


def table_files(source: str | os.PathLike) -> list[Path]:
    """The files of a source: itself, or a folder's Parquet shards (recursively, in name order)."""
    path = Path(source)
    if not path.is_dir():
        _require_file(path)
        return [path]
    shards = sorted(p for p in path.rglob("*") if p.is_file() and _suffixes(p)[-1:] in ([".parquet"], [".pq"]))
    if not shards:
        raise DataValidationError("folder holds no Parquet shards (*.parquet)", file=str(path),
                                  hint="pass a file, or a folder of Parquet files as warehouses export them")
    return shards


def iter_table_chunks(
    source: str | os.PathLike, *, column_names: list[str] | None = None, delimiter: str | None = None,
    chunk_bytes: int = 1 << 26,
) -> Iterator[tuple[str, int, pa.Table]]:
    """(file, first row, table) of consecutive chunks of a CSV/TSV[.gz] or Parquet file or a folder of shards.

    Chunks are read with the options `read_table` uses, so a chunk holds what the same rows of a
    whole-file read hold; rows are 0-based data rows of their own file.
    """
    for path in table_files(source):
        suffixes = _suffixes(path)
        suffix = suffixes[-1] if suffixes else ""
        row = 0
        try:
            if suffix in _PARQUET_SUFFIXES:
                # about chunk_bytes of a CSV: ~64 bytes per event row
                batches = pq.ParquetFile(path).iter_batches(batch_size=max(1, chunk_bytes // 64))
            elif suffix in _JSONL_SUFFIXES:
                raise DataValidationError("JSON Lines files are read whole, not in chunks", file=str(path),
                                          hint="convert the file to CSV or Parquet, or use engine='memory'")
            else:
                read_options, parse_options, convert = _csv_options(path, suffix, column_names, delimiter,
                                                                    block_size=chunk_bytes)
                batches = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options,
                                         convert_options=convert)
            for batch in batches:
                if batch.num_rows:
                    yield str(path), row, pa.Table.from_batches([batch])
                    row += batch.num_rows
        except (OSError, pa.ArrowInvalid) as error:
            raise _csv_error(path, error) from None


def require_columns(table: pa.Table, needed: list[str], *, file: str, hint: str = "") -> None:
    """Fail with the missing name, the columns that exist, and the closest one when it looks misnamed."""
    present = list(table.column_names)
    for name in needed:
        if name not in present:
            close = difflib.get_close_matches(name, present, n=1, cutoff=0.5)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            raise DataValidationError(
                f"missing column {name!r} (found {present}{guess})", file=file, column=name, hint=hint
            )


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def id_strings(column: pa.ChunkedArray | pa.Array, *, file: str, name: str) -> pa.Array:
    """Ids as strings: integers print plainly, integral floats (ids next to missing values) lose `.0`."""
    array = _flat(column)
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    if pa.types.is_integer(kind):
        return array.cast(pa.string())
    if pa.types.is_floating(kind):
        values = array.to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isnan(values) & (values != np.round(values)))
        if bad.size:
            raise DataValidationError(
                "non-integral number used as an id", file=file, column=name, row=int(bad[0]),
                value=float(values[bad[0]]), count=int(bad.size), hint="store ids as strings or integers",
            )
        return _float_ids(array)
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    raise DataValidationError(f"unsupported id type {kind}", file=file, column=name, hint="use strings or integers")


def _float_ids(array: pa.Array) -> pa.Array:
    mask = pc.is_null(array, nan_is_null=True)
    as_int = pc.cast(pc.fill_null(pc.if_else(mask, 0.0, array), 0.0), pa.int64())
    return pc.if_else(mask, pa.scalar(None, pa.string()), as_int.cast(pa.string()))


def timestamp_numbers(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, bool]:
    """Raw time values as floats, and whether they were date-times (then already UTC seconds).

    NaN marks null or unparsable values (the caller reports them with their rows). Date-time
    strings and Arrow timestamps without a zone are read as UTC. The first non-null value decides
    between number and date-time; numbers keep their unit, which the caller detects or is given.
    """
    array = _flat(column)
    kind = array.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _datetime_seconds(pd.Series(array.to_pandas())), True
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False), False
    if pa.types.is_null(kind):
        return np.full(len(array), np.nan), False
    strings = pc.utf8_trim_whitespace(array.cast(pa.string()))
    try:
        return pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False), False
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    series = pd.Series(strings.to_pandas())
    valid = series.dropna()
    first = valid.iloc[0] if len(valid) else ""
    try:
        float(first)
    except ValueError:
        return _datetime_seconds(series), True
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan), False


def _datetime_seconds(series: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(series, errors="coerce", utc=True)
    seconds = (parsed - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(dtype=np.float64, na_value=np.nan)
