"""Run the service: resolve and load a checkpoint (folder or Hub repo), then uvicorn with a draining SIGTERM."""

from __future__ import annotations

import asyncio
import copy
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import torch
import uvicorn
from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

from ..errors import CheckpointError, ConfigurationError, HubError
from ..loading import load_gamer
from .app import ServeSettings, create_app
from .handler import Recommender

__all__ = ["DTYPES", "DrainingServer", "ModelOptions", "load_recommender", "serve"]

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelOptions:
    """Which checkpoint, where it runs, and the decoding defaults of requests."""

    model: str
    revision: str | None = None
    device: str | None = None
    dtype: str = "float32"
    max_history: int | None = None
    num_beams: int = 20
    max_num_beams: int = 256


def _resolve(model: str, revision: str | None) -> tuple[Path, str]:
    """A local checkpoint folder and the name responses carry: the folder's name, or repo@revision."""
    folder = Path(model)
    if folder.is_dir():
        if revision is not None:
            raise ConfigurationError(f"--revision {revision} applies to Hub repos; {model} is a local folder")
        return folder, folder.resolve().name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id=model, revision=revision)
    except HFValidationError:
        raise CheckpointError(f"{model} is neither a checkpoint folder nor a Hub repo id") from None
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise HubError(f"could not download {model}@{revision or 'main'}: {str(error).splitlines()[0]}") from None
    return Path(path), f"{model}@{revision or 'main'}"


def load_recommender(options: ModelOptions) -> Recommender:
    """The checkpoint behind the service's rules, on its device and dtype; refuses bad options up front."""
    if options.dtype not in DTYPES:
        raise ConfigurationError(f"--dtype {options.dtype!r} is not one of {sorted(DTYPES)}")
    if options.max_history is not None and options.max_history < 1:
        raise ConfigurationError(f"--max-history must be at least 1, got {options.max_history}")
    if options.num_beams < 1 or options.max_num_beams < options.num_beams:
        raise ConfigurationError(f"--num-beams must be in 1..{options.max_num_beams}, got {options.num_beams}")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("--device cuda: no CUDA device is visible to torch")
    folder, name = _resolve(options.model, options.revision)
    model, tokenizer = load_gamer(folder, device=options.device)  # CheckpointError for incomplete or corrupt folders
    model.to(DTYPES[options.dtype])
    return Recommender(model, tokenizer, name, max_history=options.max_history, num_beams=options.num_beams,
                       max_num_beams=options.max_num_beams)


class DrainingServer(uvicorn.Server):
    """uvicorn whose first SIGTERM/SIGINT drains (new requests 503, in-flight ones finish) and exits 0.

    A second signal stops at once, as plain uvicorn does.
    """

    def __init__(self, config: uvicorn.Config, drain) -> None:
        super().__init__(config)
        self._drain, self._draining, self._loop = drain, False, None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        logger.info("%s: draining requests in flight, then exiting", signal.Signals(sig).name)
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain_then_exit()))

    async def _drain_then_exit(self) -> None:
        await self._drain()
        self.should_exit = True


def serve(options: ModelOptions, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> int:
    """Load the checkpoint (errors before the port opens), then serve until drained by a signal; 0 on a clean exit.

    `log_level` applies to uvicorn and to the service's own loggers (`gamer_hf.*`, on uvicorn's stderr handler).
    """
    if log_level.lower() not in LOG_LEVELS:
        raise ConfigurationError(f"--log-level {log_level!r} is not one of {list(LOG_LEVELS)}")
    recommender = load_recommender(options)
    app = create_app(lambda: recommender, settings)
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["gamer_hf"] = {"handlers": ["default"], "level": LOG_LEVELS[log_level.lower()],
                                         "propagate": False}
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=log_config, lifespan="on",
                            timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)))
    server = DrainingServer(config, app.state.service.drain)
    server.run()
    return 0 if server.started else 1
