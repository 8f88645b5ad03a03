"""The micro-batcher alone, on a plain function: batches, answers in order, and the waits it reports."""

from __future__ import annotations

import asyncio

from gamer_hf.serve import MicroBatcher


def batched_run(requests: list[int], max_batch_size: int,
                max_wait_ms: float) -> tuple[list[int], list[list[float]], list[list[int]]]:
    """Submit `requests` at once; (answers, the waits of each batch, the requests of each call of `run`)."""
    calls: list[list[int]] = []
    waits: list[list[float]] = []

    def run(batch):
        calls.append(list(batch))
        return [request * 10 for request in batch]

    async def main() -> list[int]:
        batcher = MicroBatcher(run, max_batch_size, max_wait_ms, on_batch=waits.append)
        batcher.start()
        try:
            return list(await asyncio.gather(*(batcher.submit(request) for request in requests)))
        finally:
            await batcher.stop()

    return asyncio.run(main()), waits, calls


def test_concurrent_requests_are_answered_together_in_order() -> None:
    answers, waits, calls = batched_run(list(range(5)), max_batch_size=64, max_wait_ms=50)
    assert answers == [0, 10, 20, 30, 40]
    assert calls == [[0, 1, 2, 3, 4]]
    assert [len(batch) for batch in waits] == [5] and all(wait >= 0 for wait in waits[0])


def test_a_full_batch_goes_without_waiting_and_the_rest_follows() -> None:
    answers, waits, calls = batched_run(list(range(7)), max_batch_size=3, max_wait_ms=20)
    assert answers == [r * 10 for r in range(7)]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]  # oldest first; the last one alone after its max wait
    assert [len(batch) for batch in waits] == [3, 3, 1]
