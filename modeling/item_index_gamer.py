"""The item index (item id -> semantic-ID code tuple) as three arrays, saved as one safetensors file.

A catalogue of millions of items cannot be a Python dict of tuples: building one takes longer than
loading the model, and a JSON file of it is the largest thing in a checkpoint. Here the ids are kept
sorted, as one UTF-8 byte buffer (each id followed by a NUL byte) with start offsets, next to a
`[num_items, K]` code array in the same row order. Loading is reading two tensors and one scan for
the NULs; lookups are binary searches (vectorized with numpy for a batch of ids, `bisect` for one).

Why safetensors and not Arrow/Parquet: this file ships inside checkpoints as remote code, which may
import only torch, transformers, tokenizers, safetensors and numpy; safetensors is already how the
weights load, is never unpickled, and is stored as an LFS blob on the Hub. The NUL separators
replace an offsets tensor (8 bytes per item, a third of the file for short numeric ids), so NUL is
the one character an item id may not contain.

A loaded index is the file itself: both tensors are memory-mapped (copy-on-write, so pages stay
shared page cache until written), the codes stay in the narrowest integer type that holds them,
and what is built beside them (id starts, lengths, 8-byte search keys) is int32/uint8 where that
holds, built in slices. At 4M items that is about 50 MB of process memory instead of 450.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ITEM_INDEX_FORMAT", "ItemIds", "ItemIndex"]

ITEM_INDEX_FORMAT = "gamer-item-index/1"
_SEARCH_CHUNK = 1 << 18  # ids per vectorized binary search (bounds the padded [chunk, width] byte arrays)
_KEY_CHUNK = 1 << 16  # ids turned into search keys at once (their [chunk, 8] int64 gather indices: 4 MiB)
_SCAN_CHUNK = 1 << 22  # buffer bytes scanned at once when building the tables beside a loaded file
_CACHED_CALL = 4096  # `rows` calls of at most this many ids go through the id -> row cache (a request's history)
_CACHED_IDS = 1 << 14  # ids the cache holds (~2 MB); a full cache starts over
_FEW_IDS = 256  # ids searched with Python-int keys (under ~15 numpy calls of padding and packing) when all fit 8 bytes
_SAFETENSORS_DTYPES = {"U8": np.uint8, "I16": np.int16, "I32": np.int32, "I64": np.int64}


def _narrowest_int(low: int, high: int) -> np.dtype:
    """The smallest of uint8, int16, int32, int64 holding every value in [low, high]."""
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _narrowed(values: np.ndarray, where: str) -> np.ndarray:
    """`values` in `_narrowest_int` of its range; no copy when it already is (a memory-mapped file stays mapped)."""
    if not values.size:
        return values.astype(np.uint8)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{where}: codes must be integers, got {values.dtype}")
    dtype = _narrowest_int(int(values.min()), int(values.max()))
    return values if values.dtype.itemsize <= dtype.itemsize else values.astype(dtype)


def _nul_terminated(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The ids `values[offsets[i]:offsets[i + 1]]`, each followed by one NUL, as one buffer."""
    lengths = np.diff(offsets)
    out = np.zeros(len(values) + len(lengths), dtype=np.uint8)
    ends = offsets[1:] + np.arange(len(lengths))  # where each id's NUL goes
    keep = np.ones(len(out), dtype=bool)
    keep[ends] = False
    out[keep] = values
    return out


def _starts_and_lengths(buffer: np.ndarray, rows: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Each id's start in the NUL-terminated `buffer` ([rows + 1], int32 below 2 GiB) and byte length (the narrowest
    type), filled a slice at a time so that building them holds no int64 array of the catalogue's size."""
    starts = np.zeros(rows + 1, dtype=np.int32 if len(buffer) < 1 << 31 else np.int64)
    found = 0
    for at in range(0, len(buffer), _SCAN_CHUNK):
        ends = np.flatnonzero(buffer[at : at + _SCAN_CHUNK] == 0)
        if found + len(ends) <= rows:
            starts[found + 1 : found + 1 + len(ends)] = ends + (at + 1)
        found += len(ends)
    if found != rows:
        raise ValueError(f"{where}: {found} NUL-terminated item ids but {rows} code rows")
    slices = [slice(start, min(start + _SEARCH_CHUNK, rows)) for start in range(0, rows, _SEARCH_CHUNK)]
    width = max((int((starts[s.start + 1 : s.stop + 1] - starts[s]).max()) - 1 for s in slices), default=0)
    lengths = np.empty(rows, dtype=_narrowest_int(0, width))
    for part in slices:
        lengths[part] = starts[part.start + 1 : part.stop + 1] - starts[part] - 1
    return starts, lengths


def _mapped(path: str) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as copy-on-write memory maps (nothing read until touched).

    The header was already validated by `safetensors.safe_open`; here its offsets locate the data."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    start, out = 8 + length, {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name} has dtype {entry['dtype']}, not one an item index uses")
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        out[name] = (np.memmap(path, dtype=dtype, mode="c", offset=start + begin, shape=shape) if end > begin
                     else np.zeros(shape, dtype=dtype))
    return out


def _padded(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """`[len(starts), width]` bytes of each slice of `buffer`, zero past its end (zero sorts first, as a shorter id does)."""
    inside = np.arange(width) < lengths[:, None]
    out = np.zeros(inside.shape, dtype=np.uint8)
    out[inside] = buffer[(starts[:, None] + np.arange(width))[inside]]
    return out


def _keys(padded: np.ndarray) -> np.ndarray:
    """`[n, 8]` zero-padded id bytes as native uint64 that order as the bytes do (big-endian read, then native)."""
    return padded.view(">u8").reshape(-1).astype(np.uint64)


def _less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise lexicographic a < b of zero-padded byte rows (UTF-8 byte order is code point order)."""
    differ = a != b
    first = differ.argmax(1)
    rows = np.arange(len(a))
    return differ.any(1) & (a[rows, first] < b[rows, first])


def _nul_message(where: str, item: str) -> str:
    return f"{where}: item id {item!r} contains a NUL character, which item ids may not hold"


class ItemIds(Sequence):
    """Read-only view of the sorted item ids: one id is decoded when asked for, all of them in one split."""

    def __init__(self, buffer: np.ndarray, starts: np.ndarray) -> None:
        self._buffer = buffer  # the index's own uint8 buffer (a memory map when loaded), not a copy
        self._starts = starts  # [n + 1]: id i is buffer[starts[i] : starts[i + 1] - 1]

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, position: Any) -> Any:
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(f"item position {position} is outside the index of {len(self)} items")
        return self._buffer[int(self._starts[position]) : int(self._starts[position + 1]) - 1].tobytes().decode("utf-8")

    def take(self, positions: np.ndarray) -> list[str]:
        """The ids at many positions (each in `0 .. len - 1`), their bounds read in two numpy gathers: what
        `recommend()` decodes for its lists, 2.3x faster than one `self[position]` each (640 ids: 0.24 against 0.57 ms)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if positions.size and not 0 <= int(positions.min()) <= int(positions.max()) < len(self):
            raise IndexError(f"item positions {int(positions.min())}..{int(positions.max())} are not all within the "
                             f"index of {len(self)} items")
        buffer = self._buffer
        return [buffer[start:end].tobytes().decode("utf-8")
                for start, end in zip(self._starts[positions].tolist(), (self._starts[positions + 1] - 1).tolist())]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), _SEARCH_CHUNK):  # decoded a slice at a time
            stop = min(start + _SEARCH_CHUNK, len(self))
            yield from self._buffer[self._starts[start] : self._starts[stop]].tobytes().decode("utf-8").split("\0")[:-1]

    def __repr__(self) -> str:
        return f"ItemIds({len(self)} items)"


class ItemIndex(Mapping):
    """Item id -> code tuple; rows are the ids in sorted order, `codes[row]` their semantic ID."""

    def __init__(self, buffer: np.ndarray, codes: np.ndarray, where: str = "item index") -> None:
        buffer = np.ascontiguousarray(buffer, dtype=np.uint8).reshape(-1)  # a memory map stays one
        codes = np.asarray(codes)
        if codes.ndim != 2:
            raise ValueError(f"{where}: codes must be a [num_items, num_levels] array, got shape {codes.shape}")
        if len(buffer) and buffer[-1] != 0:
            raise ValueError(f"{where}: the item id buffer does not end with a NUL")
        self.codes = _narrowed(codes, where)
        self._bytes = buffer
        self._starts, self._lengths = _starts_and_lengths(buffer, len(codes), where)
        self._width = int(self._lengths.max()) if len(self._lengths) else 0
        self.item_ids = ItemIds(buffer, self._starts)
        self._cached_rows: dict[str, int] = {}  # id -> row (-1 absent) of ids `rows` looked up in small calls
        self._keys = None  # ids of at most 8 bytes (numeric ids): one big-endian integer each, searched in C
        if self._width <= 8:
            self._keys = np.empty(len(self), dtype=np.uint64)
            for start in range(0, len(self), _KEY_CHUNK):
                stop = min(start + _KEY_CHUNK, len(self))
                self._keys[start:stop] = _keys(_padded(buffer, self._starts[start:stop], self._lengths[start:stop], 8))
            wrong = np.flatnonzero(self._keys[1:] <= self._keys[:-1])
            if wrong.size:
                raise ValueError(f"{where}: item ids are not sorted and unique at row {int(wrong[0]) + 1} "
                                 f"({self.item_ids[int(wrong[0])]!r} then {self.item_ids[int(wrong[0]) + 1]!r})")
        else:
            self._check_sorted(where)

    # ----- construction -----
    @classmethod
    def from_pairs(cls, item_ids: Sequence[Any], codes: Any, where: str = "item index") -> "ItemIndex":
        """From ids in any order and their code rows; ids become str and are sorted (duplicates refused)."""
        ids = [str(item) for item in item_ids]
        codes = np.asarray(codes, dtype=np.int64).reshape(len(ids), -1) if len(ids) else np.asarray(codes).reshape(0, -1)
        if "\0" in "".join(ids):  # before the fixed-width sort below, which would drop trailing NULs
            bad = next(item for item in ids if "\0" in item)
            raise ValueError(_nul_message(where, bad))
        if not ids:
            return cls(np.zeros(0, dtype=np.uint8), codes, where)
        try:
            encoded = np.array(ids, dtype=np.bytes_)  # ASCII ids (the usual case) convert in one call
        except UnicodeEncodeError:
            try:
                encoded = np.array([item.encode("utf-8") for item in ids], dtype=np.bytes_)
            except UnicodeEncodeError as error:
                raise ValueError(f"{where}: an item id is not valid Unicode ({error})") from None
        order = np.argsort(encoded, kind="stable")  # byte order of UTF-8 is code point order, as str sorts
        fixed = encoded[order]
        lengths = np.char.str_len(fixed)
        # each id's bytes: the fixed-width padding is NUL, so keep the columns up to the id's length
        values = fixed.view(np.uint8).reshape(len(ids), fixed.itemsize)[np.arange(fixed.itemsize) < lengths[:, None]]
        return cls.from_sorted_buffer(values, np.concatenate([[0], np.cumsum(lengths)]), codes[order], where)

    @classmethod
    def from_sorted_buffer(cls, values: bytes | np.ndarray, offsets: np.ndarray, codes: Any,
                           where: str = "item index") -> "ItemIndex":
        """From sorted, distinct UTF-8 ids laid end to end (id i is `values[offsets[i]:offsets[i + 1]]`, as in an
        Arrow string array's buffers) and their code rows in the same order; NULs in ids are refused here, order
        and uniqueness by the constructor, so callers holding Arrow ids need not make Python strings."""
        values = np.frombuffer(values, dtype=np.uint8) if isinstance(values, (bytes, bytearray, memoryview)) else values
        offsets = np.asarray(offsets, dtype=np.int64)
        values = np.asarray(values, dtype=np.uint8)[offsets[0] : offsets[-1]] if len(offsets) else values[:0]
        offsets = offsets - offsets[0] if len(offsets) else np.zeros(1, dtype=np.int64)
        nul = np.flatnonzero(values == 0)
        if nul.size:
            row = int(np.searchsorted(offsets, nul[0], side="right")) - 1
            bad = values[offsets[row] : offsets[row + 1]].tobytes().decode("utf-8", "backslashreplace")
            raise ValueError(_nul_message(where, bad))
        return cls(_nul_terminated(values, offsets), codes, where)

    @classmethod
    def from_mapping(cls, index: Mapping[Any, Sequence[int]], where: str = "item index") -> "ItemIndex":
        if isinstance(index, ItemIndex):
            return index
        lengths = {len(codes) for codes in index.values()}
        if len(lengths) > 1:
            raise ValueError(f"all code tuples must have the same length, got lengths {sorted(lengths)}")
        rows = [list(codes) for codes in index.values()]
        return cls.from_pairs(list(index), np.asarray(rows, dtype=np.int64).reshape(len(rows), lengths.pop() if lengths else 0),
                              where)

    def _check_sorted(self, where: str) -> None:
        """Strictly increasing ids, checked with the same vectorized comparison the lookups use."""
        for start in range(0, len(self) - 1, _SEARCH_CHUNK):
            stop = min(start + _SEARCH_CHUNK + 1, len(self))
            segment = self._bytes[self._starts[start] : self._starts[stop]]
            inside = np.arange(self._width) < self._lengths[start:stop, None]
            padded = np.zeros(inside.shape, dtype=np.uint8)
            padded[inside] = segment[segment != 0]  # a contiguous run of ids is the buffer without its NULs
            wrong = np.flatnonzero(~_less(padded[:-1], padded[1:]))
            if wrong.size:
                row = start + int(wrong[0])
                raise ValueError(f"{where}: item ids are not sorted and unique at row {row + 1} "
                                 f"({self.item_ids[row]!r} then {self.item_ids[row + 1]!r})")

    # ----- persistence -----
    def save(self, path: str | os.PathLike) -> None:
        """Write `path` atomically: codes in the smallest integer type that holds them (as held), ids as UTF-8."""
        from safetensors.numpy import save_file

        tmp = f"{path}.tmp"  # a new file renamed over `path`: a memory map of the old one stays valid
        save_file({"codes": np.ascontiguousarray(self.codes), "item_ids": np.ascontiguousarray(self._bytes)}, tmp,
                  metadata={"format": ITEM_INDEX_FORMAT})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ItemIndex":
        """Map a file `save` wrote (read in place, not copied); a damaged or foreign file raises ValueError naming it."""
        from safetensors import SafetensorError, safe_open

        name = os.path.basename(str(path))
        try:
            with safe_open(str(path), framework="np") as handle:  # validates the header and the data's extent
                names = sorted(handle.keys())
            tensors = _mapped(str(path)) if names == ["codes", "item_ids"] else {}
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{name} is corrupt: it does not read as safetensors ({error}); rebuild it with "
                             "`gamer-hf semantic-ids` or restore it") from None
        if names != ["codes", "item_ids"]:
            raise ValueError(f"{name} is not a GAMER item index: it holds {names}, expected codes and item_ids")
        return cls(tensors["item_ids"], tensors["codes"], name)

    # ----- lookups -----
    def __len__(self) -> int:
        return len(self.codes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.item_ids)

    def same_rows(self, other: "ItemIndex") -> bool:
        """Whether every id has the same row in `other` (the same sorted ids: equal id buffers), without decoding
        an id: rows looked up in one index may then be used with the other (a tokenizer loaded twice)."""
        return other is self or (len(other) == len(self) and np.array_equal(other._bytes, self._bytes))

    def row(self, item: Any) -> int:
        """Row of one id (-1 when absent): a `bisect` over the lazily decoded ids."""
        if not isinstance(item, str):
            return -1
        position = bisect.bisect_left(self.item_ids, item)
        return position if position < len(self) and self.item_ids[position] == item else -1

    def rows(self, items: Sequence[Any]) -> np.ndarray:
        """Rows of many ids at once (-1 where absent; non-str ids are looked up as str), vectorized.

        A call of up to `_CACHED_CALL` ids is answered from a bounded id -> row cache where it can, and searches only
        the ids it has not seen: a served request looks its 10-50 history ids up twice (checked in the event loop,
        encoded in the decode thread) and popular items recur across requests, while at that size a search costs
        its numpy calls, not its ids. Larger calls (evaluation, collation) search directly. The index never changes,
        so a cached row stays right; the cache is safe to share across threads. Ids longer than every catalogue id are
        not cached (they match nothing, and a request's strings could otherwise fill the cache with megabytes).
        """
        if len(items) > _CACHED_CALL:
            return self._search_ids([str(item) for item in items])
        keys = [item if type(item) is str else str(item) for item in items]
        cached = self._cached_rows
        found = list(map(cached.get, keys))
        missing = [position for position, row in enumerate(found) if row is None]
        if not missing:
            return np.array(found, dtype=np.int64)
        if len(cached) + len(missing) > _CACHED_IDS:
            cached.clear()
        if len(missing) == len(keys):  # nothing cached: one search, no merge
            rows = self._search_ids(keys)
            cached.update((key, row) for key, row in zip(keys, rows.tolist()) if len(key) <= self._width)
            return rows
        searched = self._search_ids([keys[position] for position in missing]).tolist()
        for position, row in zip(missing, searched):
            found[position] = row
            if len(keys[position]) <= self._width:
                cached[keys[position]] = row
        return np.array(found, dtype=np.int64)

    def _search_ids(self, items: Sequence[str]) -> np.ndarray:
        """`rows` of str ids by the vectorized search, in slices of `_SEARCH_CHUNK`; up to `_FEW_IDS` short ids take
        their 8-byte keys as Python ints (a request's history: the padded byte arrays are ~15 numpy calls)."""
        encoded = [item.encode("utf-8", "surrogatepass") for item in items]
        if self._keys is not None and len(encoded) <= _FEW_IDS:  # a longer id keeps its length: it matches nothing
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            keys = np.fromiter((int.from_bytes(key.ljust(8, b"\0")[:8], "big") for key in encoded), dtype=np.uint64,
                               count=len(encoded))
            return self._match_keys(keys, lengths)
        out = np.full(len(encoded), -1, dtype=np.int64)
        for start in range(0, len(encoded), _SEARCH_CHUNK):
            part = encoded[start : start + _SEARCH_CHUNK]
            lengths = np.fromiter(map(len, part), dtype=np.int64, count=len(part))
            out[start : start + len(part)] = self._search(np.frombuffer(b"".join(part), dtype=np.uint8), lengths)
        return out

    def rows_of_buffer(self, values: bytes | np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """`rows` of the UTF-8 ids `values[offsets[i]:offsets[i + 1]]` (an Arrow string array's buffers), without
        making a Python string of any of them."""
        values = np.frombuffer(values, dtype=np.uint8) if isinstance(values, (bytes, bytearray, memoryview)) else values
        offsets = np.asarray(offsets, dtype=np.int64)
        out = np.full(max(len(offsets) - 1, 0), -1, dtype=np.int64)
        for start in range(0, len(out), _SEARCH_CHUNK):
            part = offsets[start : min(start + _SEARCH_CHUNK, len(out)) + 1]
            out[start : start + len(part) - 1] = self._search(np.asarray(values[part[0] : part[-1]], dtype=np.uint8),
                                                              np.diff(part))
        return out

    def _match_keys(self, keys: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows of ids given as 8-byte search keys and byte lengths (-1 where absent; a length over 8 never matches)."""
        if not len(self):
            return np.full(len(keys), -1, dtype=np.int64)
        order = np.argsort(keys)  # sorted queries search several times faster (each starts near the last)
        candidate = np.empty(len(keys), dtype=np.int64)
        candidate[order] = np.minimum(np.searchsorted(self._keys, keys[order]), len(self) - 1)
        hit = (self._keys[candidate] == keys) & (self._lengths[candidate] == lengths)  # a NUL in a query pads alike
        return np.where(hit, candidate, -1)

    def _search(self, joined: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows of the ids laid end to end in `joined` with byte `lengths` (-1 where absent)."""
        found = np.full(len(lengths), -1, dtype=np.int64)
        fits = np.flatnonzero(lengths <= self._width) if len(self) else np.empty(0, dtype=np.int64)
        if not fits.size:
            return found
        starts = (np.cumsum(lengths) - lengths)[fits]
        lengths = lengths[fits]
        if self._keys is not None:
            found[fits] = self._match_keys(_keys(_padded(joined, starts, lengths, 8)), lengths)
            return found
        queries = _padded(joined, starts, lengths, self._width)
        low, high = np.zeros(len(fits), dtype=np.int64), np.full(len(fits), len(self), dtype=np.int64)
        while (active := np.flatnonzero(low < high)).size:
            middle = (low[active] + high[active]) // 2
            probe = _padded(self._bytes, self._starts[middle], self._lengths[middle], self._width)
            below = _less(probe, queries[active])
            low[active] = np.where(below, middle + 1, low[active])
            high[active] = np.where(below, high[active], middle)
        candidate = np.minimum(low, len(self) - 1)
        probe = _padded(self._bytes, self._starts[candidate], self._lengths[candidate], self._width)
        hit = (low < len(self)) & (self._lengths[candidate] == lengths) & (probe == queries).all(1)
        found[fits[hit]] = candidate[hit]
        return found

    def __contains__(self, item: Any) -> bool:
        return self.row(item) >= 0

    def __getitem__(self, item: Any) -> tuple[int, ...]:
        row = self.row(item)
        if row < 0:
            raise KeyError(item)
        return tuple(self.codes[row].tolist())

    def items(self) -> Iterator[tuple[str, tuple[int, ...]]]:  # type: ignore[override]
        """(id, codes) in row order without a search per id."""
        return zip(self.item_ids, map(tuple, self.codes.tolist()))

    def values(self) -> Iterator[tuple[int, ...]]:  # type: ignore[override]
        return map(tuple, self.codes.tolist())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and dict(self.items()) == {str(k): tuple(v) for k, v in other.items()}

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ItemIndex({len(self)} items, {self.codes.shape[1]} levels)"
