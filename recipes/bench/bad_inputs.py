"""Write the corrupt-input corpus: every bad-data case of the hardening issue as a small file.

Each case is one file (or folder) plus how to prepare it and what must come out: a one-line
error of a named type that quotes the file and the offending row / value, or, for inputs that
are valid but were once mishandled, a successful preparation whose summary says what was done.
`manifest.json` lists the cases; tests/data/test_bad_inputs.py and soak.py run them.

    python recipes/bench/bad_inputs.py            # (re)writes tests/data/bad_inputs/
    python recipes/bench/bad_inputs.py --out DIR  # elsewhere (the test compares the two)
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "bad_inputs"
LEVELS = "click:0,cart:1,buy:2"
HEADER = "user_id,item_id,behavior,timestamp\n"
START = 1_700_000_000  # 2023-11-14, unix seconds


def _rows(count: int = 20, scale: int = 1, behavior: str = "click") -> str:
    """`count` plausible events of five users over seven items, a minute apart, in unit 1/scale s."""
    return "".join(f"u{i % 5},i{i % 7},{behavior},{(START + 60 * i) * scale}\n" for i in range(count))


GOOD = HEADER + _rows() + _rows(behavior="buy")


def _gzip(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _parquet(text: str) -> bytes:
    lines = [line.split(",") for line in text.strip().splitlines()[1:]]
    table = pa.table({name: [row[i] for row in lines] for i, name in enumerate(HEADER.strip().split(","))})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _case(file: str, content: str | bytes, expect: str, *, names: list[str], error: str = "DataError",
          **prepare: Any) -> dict[str, Any]:
    return {"file": file, "content": content, "expect": expect, "error": error, "names": names,
            "prepare": {"behaviors": LEVELS, **prepare}}


def cases() -> list[dict[str, Any]]:
    """Every case: file name, bytes, the prepare options, and what the outcome must name."""
    long_id = "x" * 600
    return [
        # timestamps (issue item 4)
        _case("timestamp_negative.csv", GOOD + "u1,i1,click,-5\n", "error", names=["row 40", "'-5'"]),
        _case("timestamp_1e20.csv", GOOD + "u1,i1,click,1e20\n", "error", names=["row 40", "'1e20'"]),
        _case("timestamp_year_2100.csv", GOOD + "u1,i1,click,4102444800\n", "error",
              names=["row 40", "'4102444800'", "after now + 1 day"]),
        _case("timestamp_mixed_ms_and_s.csv", HEADER + _rows() + _rows(scale=1000, behavior="cart"), "error",
              names=["mixed units", "unix milliseconds", "row 20", "(20 rows in total)"]),
        _case("timestamp_seconds_read_as_ms.csv", GOOD, "error", names=["row 0", "mixed units", "unix seconds"],
              format="events", time_unit="ms"),
        _case("timestamp_text.csv", GOOD + "u1,i1,click,yesterday\n", "error", names=["row 40", "'yesterday'"]),
        # ids (item 5)
        _case("id_too_long.csv", GOOD + f"u1,{long_id},click,{START}\n", "error",
              names=["'item_id'", "row 40", "longer than 512", "(600 characters)"]),
        _case("id_unclosed_quote.csv", GOOD.replace("u3,i3,click", 'u3,"i3,click', 1), "error",
              names=["cannot parse as delimited text", "Expected 4 columns, got 2"]),
        _case("id_null.csv", GOOD + f",i1,click,{START}\n", "error", names=["'user_id'", "row 40"]),
        # files and layouts (items 6 and 8, and the old validation rules)
        _case("truncated.csv.gz", _gzip(HEADER + _rows(4000))[:2000], "error",
              names=["truncated or damaged compressed file"]),
        _case("truncated.parquet", _parquet(GOOD)[:200], "error", names=["unreadable file"]),
        _case("not_parquet.parquet", np.random.default_rng(0).bytes(300), "error", names=["unreadable file"]),
        _case("not_utf8.csv", (GOOD + "u1,caf\xe9,click,1700000001\n").encode("latin-1"), "error",
              names=["cannot parse as delimited text"]),
        _case("ragged_row.csv", GOOD + f"u1,i1,click,{START},extra\n", "error",
              names=["cannot parse as delimited text", "Expected 4 columns"]),
        _case("empty.csv", "", "error", names=["Empty CSV file"]),
        _case("header_only.csv", HEADER, "error", names=["no events left"]),
        _case("missing_column.csv", GOOD.replace("item_id", "item", 1), "error",
              names=["missing column 'item_id'", "did you mean 'item'"]),
        _case("unknown_behavior.csv", GOOD + f"u1,i1,clik,{START}\n", "error", names=["row 40", "'clik'"]),
        _case("duplicate_row.csv", GOOD + f"u0,i0,click,{START}\n", "error", names=["duplicate row", "row 40"]),
        _case("meta_not_json/events.csv.gz", _gzip(GOOD), "error", names=["meta.json", "not valid JSON"],
              format="gamer"),
        _case("meta_not_json/meta.json", '{"stats": {"behavior_order_low_to_high": ["click", "cart"', "aux",
              names=[]),
        _case("out_is_a_file", "prepared output goes here, said nobody\n", "error", error="ConfigurationError",
              names=["is a file, not a folder"], events="quoted_header.csv"),
        # valid inputs that were mishandled
        _case("quoted_header.csv", GOOD.replace(HEADER, '"user_id","item_id","behavior","timestamp"\n'), "ok",
              names=["unix seconds (detected from their magnitudes)"]),
        _case("whitespace_ids.csv", GOOD.replace("u1,i1,", " u1 , i1 ,"), "ok",
              names=["stripped 2 (surrounding whitespace)", "column 'user_id'", "column 'item_id'", "users         5",
                     "items         7"]),
        _case("milliseconds.csv", HEADER + _rows(scale=1000) + _rows(scale=1000, behavior="buy"), "ok",
              names=["unix milliseconds (detected from their magnitudes)"], on_duplicate="keep"),
    ]


def write_corpus(out: Path) -> list[dict[str, Any]]:
    """Write every case under `out` (replacing it) with manifest.json; return the manifest."""
    if out.exists():
        shutil.rmtree(out)
    manifest = []
    for case in cases():
        path = out / case["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        content = case["content"]
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        if case["expect"] != "aux":
            manifest.append({key: value for key, value in case.items() if key != "content"})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (tests/bench parses the commands of RESULTS.md and README.md with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    manifest = write_corpus(args.out)
    print(f"wrote {len(manifest)} cases to {args.out}")


if __name__ == "__main__":
    main()
