"""recipes/bench/serve_profile.py's readings: the batch trace it parses is the batcher's own debug line, and the
event loop's py-spy samples count for the innermost library they are in."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gamer_hf.serve import MicroBatcher


def test_batch_trace_reads_the_batchers_debug_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    bench_script) -> None:
    profile = bench_script("serve_profile.py")

    async def main() -> None:
        batcher = MicroBatcher(lambda batch: list(batch), 3, 5.0)
        batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(request) for request in range(7)))
        finally:
            await batcher.stop()

    with caplog.at_level(logging.DEBUG, logger="gamer_hf.serve.batcher"):
        asyncio.run(main())
    log = tmp_path / "server.log"
    log.write_text("\n".join(record.getMessage() for record in caplog.records) + "\n", encoding="utf-8")
    trace = profile.batch_trace(log)
    assert [b["size"] for b in trace] == [3, 3, 1] and [b["queue_at_start"] for b in trace] == [4, 1, 0]
    summary = profile.trace_summary(trace, seconds=1.0)
    assert summary["batches"] == 3 and summary["first_batches"] == [3, 3, 1] and summary["mean_batch"] == 2.3


@pytest.mark.parametrize(("stack", "part"), [
    ("run (asyncio/runners.py:1);run_asgi (uvicorn/protocols/http/httptools_impl.py:2);__call__ (fastapi/applications.py:3);"
     "validate_python (pydantic/type_adapter.py:4)", "pydantic (validation, serialization)"),
    ("run (asyncio/runners.py:1);run_asgi (uvicorn/protocols/http/httptools_impl.py:2);__call__ (starlette/routing.py:3);"
     "prepare (gamer_hf/serve/handler.py:170);encode (tokenizers/x.py:5)", "Recommender.prepare (per-request checks, item lookup)"),
    ("run (asyncio/runners.py:1);data_received (uvicorn/protocols/http/httptools_impl.py:2)",
     "uvicorn HTTP protocol (httptools callbacks, writing responses)"),
    ("select (selectors.py:1)", "other"),
])
def test_loop_samples_count_for_the_innermost_library(stack: str, part: str, bench_script) -> None:
    assert bench_script("serve_profile.py").bucket(stack) == part
