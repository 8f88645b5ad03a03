"""The service's Prometheus metrics, on a registry of its own (several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """Requests by path and status, latency, micro-batch sizes and decode times, the queue and its waits.

    Latency splits into the wait in the queue, the batch's decode and the rest (HTTP, validation, JSON),
    which tells whether a slow server is waiting to batch, decoding, or busy on the event loop.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("gamer_requests", "HTTP requests answered", ["path", "status"], registry=self.registry)
        self.latency = Histogram("gamer_request_latency_seconds", "time from request to response", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("gamer_batch_size", "requests decoded together in one recommend() call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("gamer_queue_wait_seconds", "time a request waited for its micro-batch to start",
                                    buckets=WAIT_BUCKETS, registry=self.registry)
        self.decode_time = Histogram("gamer_batch_decode_seconds", "wall time of one micro-batch in the model",
                                     buckets=LATENCY_BUCKETS, registry=self.registry)
        self.recommend_calls = Counter("gamer_recommend_calls", "recommend() calls (a micro-batch is split by beam "
                                       "width and history length)", registry=self.registry)
        self.queue_depth = Gauge("gamer_queue_depth", "requests waiting for a batch", registry=self.registry)
        self.in_flight = Gauge("gamer_requests_in_flight", "requests being answered", registry=self.registry)
        self.decoding = Gauge("gamer_batches_decoding", "micro-batches inside recommend() now (one decode thread: 0 or 1)",
                              registry=self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def observe_batch(self, waits: list[float]) -> None:
        self.batch_size.observe(len(waits))
        for seconds in waits:
            self.queue_wait.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
