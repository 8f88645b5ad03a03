"""Dynamic micro-batching: concurrent requests wait a few milliseconds and are decoded in one call.

Decoding runs on one worker thread (the model is not re-entrant, and torch releases the GIL), so
the event loop keeps answering health checks and accepting requests while a batch decodes; the
requests that arrive meanwhile form the next batch.

With `refill`, a batch that ends expects its clients back: the next batch goes as soon as as many
requests are queued as it answered plus those already waiting (or it is full), and otherwise
`max_wait_ms` after the later of the batch's end and the oldest request's arrival. Without it, the
next batch goes when the oldest request has waited `max_wait_ms`; closed-loop clients then split
into groups that take turns (the requests queued while a batch decodes are past their wait when it
ends and go without the clients just answered), or, with a longer wait, every batch waits it out.
Each batch is logged at DEBUG (logger `gamer_hf.serve.batcher`): its size, the queue at its start
and end, the oldest request's wait, the worker's idle time before it, and its decode time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

__all__ = ["MicroBatcher"]

logger = logging.getLogger(__name__)

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class MicroBatcher(Generic[Request, Answer]):
    """Queue requests; take up to `max_batch_size` once the oldest has waited `max_wait_ms` (or the batch is full);
    with `refill`, right after a batch, once its clients are back or `max_wait_ms` passed since it ended.

    `run(batch)` returns one answer per request, in order; `on_batch(waits)` (the seconds each request of a
    batch waited in the queue) and `on_queue(depth)` report to metrics.
    """

    def __init__(self, run: Callable[[Sequence[Request]], Sequence[Answer]], max_batch_size: int = 64,
                 max_wait_ms: float = 5.0, refill: bool = False,
                 on_batch: Callable[[list[float]], Any] = lambda waits: None,
                 on_queue: Callable[[int], Any] = lambda depth: None) -> None:
        self._run, self.max_batch_size, self.max_wait, self.refill = run, max_batch_size, max_wait_ms / 1000, refill
        self._on_batch, self._on_queue = on_batch, on_queue
        self._pending: deque[tuple[float, Request, asyncio.Future[Answer]]] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gamer-decode")
        self._worker: asyncio.Task[None] | None = None
        self._expected, self._ended = max_batch_size, 0.0  # the queue the last batch's clients refill; its end

    @property
    def depth(self) -> int:
        """Requests waiting for a batch (not counting the batch being decoded)."""
        return len(self._pending)

    def start(self) -> None:
        self._ended = time.monotonic()
        self._worker = asyncio.get_running_loop().create_task(self._loop(), name="gamer-micro-batcher")

    async def stop(self) -> None:
        """Stop taking batches (the batch in flight finishes first) and release the worker thread."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for _, _, future in self._pending:
            future.cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, request: Request) -> Answer:
        [answer] = await self.submit_many([request])
        return answer

    async def submit_many(self, requests: Sequence[Request]) -> list[Answer]:
        """Enqueue requests together (they may still be split across batches) and await their answers in order."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        now = time.monotonic()
        self._pending.extend((now, request, future) for request, future in zip(requests, futures))
        self._on_queue(len(self._pending))
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    def _remaining_wait(self, now: float) -> float:
        """Seconds the queued requests still wait for others (0 or less: the batch goes now)."""
        oldest = self._pending[0][0]
        if len(self._pending) >= self.max_batch_size:
            return 0.0
        if not self.refill or oldest > self._ended + self.max_wait:  # no batch just ended: wait for company
            return oldest + self.max_wait - now
        if len(self._pending) >= self._expected:  # the clients of the batch that just ended are back
            return 0.0
        return max(oldest, self._ended) + self.max_wait - now

    async def _next_batch(self) -> list[tuple[float, Request, asyncio.Future[Answer]]]:
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        while (remaining := self._remaining_wait(time.monotonic())) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
                pass
        batch = [self._pending.popleft() for _ in range(min(self.max_batch_size, len(self._pending)))]
        self._on_queue(len(self._pending))
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [entry for entry in await self._next_batch() if not entry[2].cancelled()]
            if not batch:
                continue
            started, left = time.monotonic(), len(self._pending)
            self._on_batch([started - queued for queued, _, _ in batch])
            try:
                answers = await loop.run_in_executor(self._executor, self._run, [request for _, request, _ in batch])
            except Exception as error:  # noqa: BLE001 - `run` isolates request failures; this is a bug, told to all
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (_, _, future), answer in zip(batch, answers):
                    if not future.done():
                        future.set_result(answer)
            idle, self._ended = started - self._ended, time.monotonic()
            self._expected = min(self.max_batch_size, len(batch) + len(self._pending))
            logger.debug("batch of %d (queue %d at its start, %d at its end): oldest waited %.1f ms, worker idle "
                         "%.1f ms before it, decoded in %.1f ms", len(batch), left, len(self._pending),
                         1000 * (started - batch[0][0]), 1000 * idle, 1000 * (self._ended - started))
