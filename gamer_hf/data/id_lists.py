"""A JSON list of id strings (users.json, items.json) read straight into one Arrow string array.

The legacy path: prepare now writes the ids beside the JSON as one Arrow column (`items.ids.arrow`), which
`LazyIds` memory-maps; this scan reads the folders prepared before that.

`json.load` of 4M ids makes 4M Python strings (about 240 MB for a 47 MB file) only to copy them into
Arrow; pyarrow's JSON reader takes newline-delimited objects, not a top-level list. What prepare
writes is `["id", "id", ...]` with one separator throughout and no escapes unless an id holds a
quote, a backslash or a control character, so the quotes alone delimit the ids: a vectorized scan
of the memory-mapped file finds them, checks that everything between them is the separator, and
copies the ids' bytes into Arrow buffers a slice at a time (UTF-8 checked by Arrow). Any file that is
not of that shape (escapes, other spacing, numbers, damage) returns None, and the caller parses it
as JSON, so the result and the errors are those of the JSON parser.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

__all__ = ["read_id_array", "string_buffers"]

_IDS_AT_ONCE = 1 << 16  # ids whose bytes are moved at once (bounds the temporaries)
_QUOTE, _BACKSLASH, _COMMA, _SPACE = b'"'[0], b"\\"[0], b","[0], b" "[0]


def read_id_array(path: Path) -> pa.Array | None:
    """The ids of `path` as one Arrow string array, or None when the file is not a plain escape-free list."""
    if path.stat().st_size == 0:
        return None
    text = np.memmap(path, dtype=np.uint8, mode="r")
    quotes = _positions(text, _QUOTE)
    if len(quotes) % 2 or _count(text, _BACKSLASH):
        return None
    opening, closing = quotes[0::2], quotes[1::2]
    if not len(quotes):
        return pa.array([], pa.string()) if re.fullmatch(rb"\s*\[\s*\]\s*", text.tobytes()) else None
    head, tail = text[: opening[0]].tobytes(), text[closing[-1] + 1 :].tobytes()
    if not (re.fullmatch(rb"\s*\[\s*", head) and re.fullmatch(rb"\s*\]\s*", tail)):
        return None
    gap = int(opening[1] - closing[0] - 1) if len(opening) > 1 else 0  # separator bytes: ", " (json.dump) or ","
    separator = np.array([_COMMA, _SPACE][:gap], dtype=np.uint8)
    if len(opening) > 1 and gap not in (1, 2):
        return None
    lengths = closing - opening - 1
    values = np.empty(int(lengths.sum()), dtype=np.uint8)
    written = 0
    for start in range(0, len(opening), _IDS_AT_ONCE):
        stop = min(start + _IDS_AT_ONCE, len(opening))
        after = closing[start : min(stop, len(opening) - 1)]  # ids a separator follows, the next slice's first too
        if not (opening[start + 1 : start + 1 + len(after)] == after + (gap + 1)).all():
            return None
        if gap and not (text[after[:, None] + 1 + np.arange(gap)] == separator).all():
            return None
        first, last = int(opening[start]) + 1, int(closing[stop - 1])
        span = text[first:last]
        if (span < 0x20).any():
            return None  # a raw control character, which JSON refuses
        cut = ((closing[start : stop - 1] - first)[:, None] + np.arange(gap + 2)).ravel()  # quote, separator, quote
        keep = np.ones(len(span), dtype=bool)
        keep[cut] = False
        part = span[keep]
        values[written : written + len(part)] = part
        written += len(part)
    large = len(values) >= 1 << 31
    offsets = np.zeros(len(opening) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum(lengths, out=offsets[1:])
    array = pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(opening),
                                  [None, pa.py_buffer(offsets), pa.py_buffer(values)])
    try:
        array.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        return None
    return array


def _positions(text: np.ndarray, byte: int) -> np.ndarray:
    """Positions of `byte` in `text` (int32 below 2 GiB), found a slice at a time."""
    dtype = np.int32 if len(text) < 1 << 31 else np.int64
    step = 1 << 24
    return np.concatenate([np.flatnonzero(text[at : at + step] == byte).astype(dtype) + dtype(at)
                           for at in range(0, len(text), step)] or [np.zeros(0, dtype)])


def _count(text: np.ndarray, byte: int) -> int:
    step = 1 << 24
    return sum(int(np.count_nonzero(text[at : at + step] == byte)) for at in range(0, len(text), step))


def string_buffers(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) of an Arrow string array, zero-copy: id i is `values[offsets[i]:offsets[i + 1]]`, what
    `ItemIndex.from_sorted_buffer` and `ItemIndex.rows_of_buffer` take (modeling/ cannot import pyarrow)."""
    ids = ids.cast(pa.large_string())  # int64 offsets, whatever the input's string type (a copy only if it was not)
    _, offsets, values = ids.buffers()
    offsets = (np.frombuffer(offsets, dtype=np.int64, count=len(ids) + 1, offset=8 * ids.offset) if len(ids)
               else np.zeros(1, dtype=np.int64))
    return (np.frombuffer(values, dtype=np.uint8) if values is not None else np.zeros(0, dtype=np.uint8)), offsets
