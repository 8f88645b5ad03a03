"""`gamer-hf serve`: the micro-batched HTTP recommendation service for one checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..serve import ModelOptions, ServeSettings, serve

__all__ = ["ServeArguments", "run"]


@dataclass
class ServeArguments:
    """`gamer-hf serve`'s flags; the service's defaults are ServeSettings' and ModelOptions', read from them."""

    model: str = field(metadata={"help": "GAMER checkpoint folder, or a Hub repo id"})
    revision: Optional[str] = field(default=None, metadata={"help": "Hub branch, tag or commit (repo ids only)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0 for every interface)"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    max_batch_size: int = field(
        default=ServeSettings.max_batch_size,
        metadata={"help": "most histories decoded in one recommend() call"},
    )
    max_wait_ms: float = field(
        default=ServeSettings.max_wait_ms,
        metadata={"help": "longest a request waits for others to batch with"},
    )
    refill: bool = field(
        default=ServeSettings.refill,
        metadata={"help": "after a batch, the next one goes as soon as its clients have sent again, or "
                          "--max-wait-ms after it ended"},
    )
    max_history: Optional[int] = field(
        default=None,
        metadata={"help": "keep the most recent N interactions (default: the trained length when the config "
                          "records it, else as many as the positions hold)"},
    )
    num_beams: int = field(
        default=ModelOptions.num_beams,
        metadata={"help": "beam width when a request gives none (raised to top_k)"},
    )
    max_num_beams: int = field(
        default=ModelOptions.max_num_beams,
        metadata={"help": "largest beam width a request may ask for"},
    )
    device: Optional[Literal["cpu", "cuda"]] = field(default=None, metadata={"help": "default: cuda when available"})
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default=ModelOptions.dtype,
        metadata={"help": "weights dtype"},
    )
    max_body_bytes: int = field(
        default=ServeSettings.max_body_bytes,
        metadata={"help": "larger request bodies get 413"},
    )
    drain_timeout_s: float = field(
        default=ServeSettings.drain_timeout_s,
        metadata={"help": "on SIGTERM, longest wait for requests in flight"},
    )
    log_level: str = field(default="info", metadata={"help": "log level of uvicorn and the service (debug: one "
                                                                "line per micro-batch)"})


def run(args: ServeArguments) -> int:
    options = ModelOptions(model=args.model, revision=args.revision, device=args.device, dtype=args.dtype,
                           max_history=args.max_history, num_beams=args.num_beams, max_num_beams=args.max_num_beams)
    settings = ServeSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, refill=args.refill,
                             max_body_bytes=args.max_body_bytes, drain_timeout_s=args.drain_timeout_s)
    return serve(options, settings, host=args.host, port=args.port, log_level=args.log_level)
