"""The recommendation service as a FastAPI app: routes, the boundary checks, readiness and draining.

`create_app(load)` builds the app around a `Recommender` factory; the factory runs at start-up off the
event loop (so `/health` answers while a checkpoint loads and warms up, and `/ready` says 503 until
it has). The same app runs under uvicorn (`gamer_hf.serve.server`) and inside a Ray Serve replica
(`recipes/serve/`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ..errors import ConfigurationError
from .batcher import MicroBatcher
from .handler import (
    ErrorResponse,
    PreparedRequest,
    RecommendBatchRequest,
    RecommendBatchResponse,
    Recommender,
    RecommendRequest,
    RecommendResponse,
    RequestError,
    validation_error,
)
from .metrics import CONTENT_TYPE_LATEST, ServiceMetrics

__all__ = ["ServeSettings", "ServiceState", "create_app"]

logger = logging.getLogger(__name__)

ROUTES = ("/v1/recommend", "/v1/recommend/batch", "/health", "/ready", "/metrics", "/docs", "/openapi.json")
ALWAYS_ANSWERED = ("/health", "/metrics")  # while draining too: probes and scrapers see the shutdown
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in ((400, "malformed JSON"), (413, "body too large"), (422, "invalid request"),
                         (503, "not ready, or shutting down"))
}


@dataclass(frozen=True)
class ServeSettings:
    """Batching and boundary limits of one server process."""

    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    refill: bool = False  # after a batch, the next goes once its clients are back (at most max_wait_ms after it)
    max_body_bytes: int = 1 << 20
    drain_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name, low in (("max_batch_size", 1), ("max_wait_ms", 0), ("max_body_bytes", 1), ("drain_timeout_s", 0)):
            if getattr(self, name) < low:
                flag = "--" + name.replace("_", "-")
                raise ConfigurationError(f"{flag} must be at least {low}, got {getattr(self, name)}")


class ServiceState:
    """What the routes, the middleware and the drain share: the model once loaded, and the counters."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.recommender: Recommender | None = None
        self.batcher: MicroBatcher[PreparedRequest, RecommendResponse | RequestError] | None = None
        self.load_error: str | None = None
        self.draining = False
        self.in_flight = 0

    @property
    def ready(self) -> bool:
        return self.recommender is not None and not self.draining

    async def drain(self) -> None:
        """Refuse new requests (503) and wait until those in flight are answered, at most drain_timeout_s."""
        self.draining = True
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while (self.in_flight or (self.batcher and self.batcher.depth)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.in_flight:
            logger.warning("drain timed out with %d requests in flight", self.in_flight)


def _error(status: int, field: str, message: str, value: Any = None) -> JSONResponse:
    return JSONResponse(RequestError(field, value, message, status).to_dict(), status_code=status)


class _ServiceMiddleware:
    """Pure ASGI: refuses while draining, caps the body size, counts requests in flight and their metrics."""

    def __init__(self, app: Any, state: ServiceState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in ROUTES else "other"
        started, status = time.perf_counter(), [500]

        async def send_counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.state.in_flight += 1
        self.state.metrics.in_flight.inc()
        try:
            if self.state.draining and path not in ALWAYS_ANSWERED:
                await _error(503, "server", "the server is shutting down; retry on another replica")(
                    scope, receive, send_counted)
            else:
                body = await self._body(scope, receive)
                if body is None:
                    limit = self.state.settings.max_body_bytes
                    too_large = _error(413, "body", f"request body larger than {limit} bytes", limit)
                    await too_large(scope, receive, send_counted)
                else:
                    await self.app(scope, _replay(body, receive), send_counted)
        finally:
            self.state.in_flight -= 1
            self.state.metrics.in_flight.dec()
            self.state.metrics.observe(path, status[0], time.perf_counter() - started)

    async def _body(self, scope: dict[str, Any], receive: Callable) -> bytes | None:
        """The whole body, or None past the limit (told by Content-Length or counted while reading)."""
        limit = self.state.settings.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Callable) -> Callable:
    """The body read by the middleware as one message, then the client's own messages (disconnect)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def create_app(load: Callable[[], Recommender], settings: ServeSettings | None = None) -> FastAPI:
    """The service around `load()`, which runs once at start-up on a worker thread and may take a while."""
    state = ServiceState(settings or ServeSettings())

    async def start() -> None:
        try:
            recommender = await asyncio.to_thread(load)
            await asyncio.to_thread(recommender.warm_up)

            def decode(batch: list[PreparedRequest]) -> list[RecommendResponse | RequestError]:
                calls = recommender.calls
                # /metrics tells when a batch is decoding, for how long, and in how many recommend() calls
                with state.metrics.decoding.track_inprogress(), state.metrics.decode_time.time():
                    answers = recommender.run(batch)
                state.metrics.recommend_calls.inc(recommender.calls - calls)
                return answers

            state.batcher = MicroBatcher(
                decode, state.settings.max_batch_size, state.settings.max_wait_ms, state.settings.refill,
                on_batch=state.metrics.observe_batch, on_queue=state.metrics.queue_depth.set,
            )
            state.batcher.start()
        except Exception as error:  # noqa: BLE001 - reported by /ready; the process keeps answering /health
            logger.exception("loading the checkpoint failed")
            state.load_error = f"{type(error).__name__}: {error}"
            return
        state.recommender = recommender
        logger.info("ready: %s (max batch %d, max wait %.1f ms, refill %s)", recommender.name,
                    state.settings.max_batch_size, state.settings.max_wait_ms, state.settings.refill)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(start())
        yield
        loading.cancel()
        if state.batcher is not None:
            await state.batcher.stop()

    app = FastAPI(title="GAMER recommendations", version="1", lifespan=lifespan,
                  description="Top-K next items for a behavior history under a requested behavior.")
    app.state.service = state
    app.add_middleware(_ServiceMiddleware, state=state)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse(error.to_dict(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return await request_error(request, validation_error(error.errors()))

    def recommender() -> Recommender:
        if state.recommender is None:
            raise RequestError("server", state.load_error, "the model is not loaded yet; poll /ready", status=503)
        return state.recommender

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES)
    async def recommend(request: RecommendRequest) -> RecommendResponse | RequestError:
        """Top-K items for one history: the list `model.recommend` gives this history alone."""
        prepared = recommender().prepare(request)
        answer = await state.batcher.submit(prepared)
        if isinstance(answer, RequestError):
            raise answer
        return answer

    @app.post("/v1/recommend/batch", response_model=RecommendBatchResponse, responses=ERROR_RESPONSES)
    async def recommend_batch(batch: RecommendBatchRequest) -> RecommendBatchResponse:
        """Several histories in one body; results in request order. Any invalid request refuses the body."""
        model = recommender()
        prepared = [model.prepare(request, f"requests.{i}.") for i, request in enumerate(batch.requests)]
        answers = await state.batcher.submit_many(prepared)
        for answer in answers:
            if isinstance(answer, RequestError):
                raise answer
        return RecommendBatchResponse(results=answers)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive (answers while a batch decodes, and while draining)."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> JSONResponse:
        """200 once the checkpoint is loaded and warmed up; 503 before, after a failed load, and while draining."""
        if state.ready:
            return JSONResponse({"status": "ready", "model": state.recommender.name})
        reason = state.load_error or ("draining" if state.draining else "loading")
        return _error(503, "server", f"not ready: {reason}")

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format: requests by path and status, latency, batch sizes, queue depth, batches decoding."""
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app
