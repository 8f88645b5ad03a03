"""Online serving: `gamer-hf serve`, a micro-batched HTTP recommendation service (FastAPI + uvicorn).

    from gamer_hf.serve import ModelOptions, ServeSettings, serve
    serve(ModelOptions("gamer"), ServeSettings(max_batch_size=64, max_wait_ms=5), port=8000)

Needs the `serve` extra (fastapi, uvicorn, prometheus_client). `handler.py` holds the request and
response shapes, shared with the Hugging Face Inference Endpoints handler that push uploads.
"""

from .app import ServeSettings, ServiceState, create_app
from .batcher import MicroBatcher
from .handler import (
    EndpointHandler,
    RecommendBatchRequest,
    RecommendBatchResponse,
    Recommender,
    RecommendRequest,
    RecommendResponse,
    RequestError,
)
from .server import ModelOptions, load_recommender, serve

__all__ = [
    "EndpointHandler",
    "MicroBatcher",
    "ModelOptions",
    "RecommendBatchRequest",
    "RecommendBatchResponse",
    "RecommendRequest",
    "RecommendResponse",
    "Recommender",
    "RequestError",
    "ServeSettings",
    "ServiceState",
    "create_app",
    "load_recommender",
    "serve",
]
