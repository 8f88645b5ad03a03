"""The micro-batcher alone, on a plain function: batches, answers in order, and the waits it reports."""

from __future__ import annotations

import asyncio
import time

import pytest

from gamer_hf.serve import MicroBatcher


def batched_run(requests: list[int], max_batch_size: int, max_wait_ms: float,
                refill: bool = False) -> tuple[list[int], list[list[float]], list[list[int]]]:
    """Submit `requests` at once; (answers, the waits of each batch, the requests of each call of `run`)."""
    calls: list[list[int]] = []
    waits: list[list[float]] = []

    def run(batch):
        calls.append(list(batch))
        return [request * 10 for request in batch]

    async def main() -> list[int]:
        batcher = MicroBatcher(run, max_batch_size, max_wait_ms, refill, on_batch=waits.append)
        batcher.start()
        try:
            return list(await asyncio.gather(*(batcher.submit(request) for request in requests)))
        finally:
            await batcher.stop()

    return asyncio.run(main()), waits, calls


@pytest.mark.parametrize("refill", [False, True])
def test_concurrent_requests_are_answered_together_in_order(refill: bool) -> None:
    answers, waits, calls = batched_run(list(range(5)), max_batch_size=64, max_wait_ms=50, refill=refill)
    assert answers == [0, 10, 20, 30, 40]
    assert calls == [[0, 1, 2, 3, 4]]
    assert [len(batch) for batch in waits] == [5] and all(wait >= 0 for wait in waits[0])


@pytest.mark.parametrize("refill", [False, True])
def test_a_full_batch_goes_without_waiting_and_the_rest_follows(refill: bool) -> None:
    # with refill too: the queue holds a full batch when the first ends, and nobody comes back after the second
    answers, waits, calls = batched_run(list(range(7)), max_batch_size=3, max_wait_ms=20, refill=refill)
    assert answers == [r * 10 for r in range(7)]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]  # oldest first; the last one alone after its max wait
    assert [len(batch) for batch in waits] == [3, 3, 1]


def closed_loop_batches(refill: bool, max_wait_ms: float = 40) -> list[int]:
    """Batch sizes for 8 closed-loop clients (each sends again as soon as it is answered) in two groups: four send
    first, the other four while that batch decodes; a batch decodes for twice the max wait, so whoever is queued
    when it ends has waited longer than that."""
    sizes: list[int] = []

    def run(batch):
        sizes.append(len(batch))
        time.sleep(2 * max_wait_ms / 1000)
        return list(batch)

    async def client(batcher: MicroBatcher, name: int, rounds: int) -> None:
        for round_ in range(rounds):
            assert await batcher.submit((name, round_)) == (name, round_)

    async def main() -> None:
        batcher = MicroBatcher(run, 8, max_wait_ms, refill=refill)
        batcher.start()
        try:
            first = [asyncio.create_task(client(batcher, name, 4)) for name in range(4)]
            while not sizes:  # the first four are decoding
                await asyncio.sleep(0.001)
            await asyncio.gather(*first, *(client(batcher, name, 3) for name in range(4, 8)))
        finally:
            await batcher.stop()

    asyncio.run(main())
    return sizes


def test_without_refill_closed_loop_clients_take_turns_in_two_groups() -> None:
    assert closed_loop_batches(refill=False) == [4, 4, 4, 4, 4, 4, 4]


def test_refill_waits_for_the_clients_just_answered_and_the_groups_merge() -> None:
    assert closed_loop_batches(refill=True) == [4, 8, 8, 8]



def test_refill_takes_the_next_batch_as_soon_as_the_clients_are_back() -> None:
    """8 closed-loop clients, batches of up to 16: the first batch waits out the max wait (nothing just ended), the
    next ones go as soon as all 8 are back instead of waiting it out again."""
    waits: list[list[float]] = []

    async def client(batcher: MicroBatcher, name: int) -> None:
        for round_ in range(3):
            assert await batcher.submit((name, round_)) == (name, round_)

    async def main() -> None:
        batcher = MicroBatcher(lambda batch: list(batch), 16, 1000, refill=True, on_batch=waits.append)
        batcher.start()
        try:
            await asyncio.gather(*(client(batcher, name) for name in range(8)))
        finally:
            await batcher.stop()

    asyncio.run(main())
    assert [len(batch) for batch in waits] == [8, 8, 8]
    assert min(waits[0]) >= 1.0 and max(waits[1] + waits[2]) < 1.0
