"""The request and response shapes of GAMER's recommendation service, and its Inference Endpoints handler.

One module for both ways of serving a checkpoint, so that they validate and answer alike:

- the HTTP server (`gamer_hf.serve.app`, `gamer-hf serve`) parses bodies into `RecommendRequest`,
  checks them with `Recommender.prepare` and decodes concurrent ones together with `Recommender.run`;
- Hugging Face Inference Endpoints call `EndpointHandler(path)(data)` (a custom handler).

This module imports only pydantic and, to load a checkpoint, transformers, on purpose:
`gamer_hf.hub.push_to_hub` ships a verbatim copy as `handler.py` in every repo, where gamer_hf may
not be installed (the model then loads as remote code). With gamer_hf installed, checkpoints load
through its verified loader and request errors are `gamer_hf.errors.InputError`s.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

try:  # inside gamer_hf, a bad request is one of its typed errors; in a pushed repo, a ValueError
    from gamer_hf.errors import InputError as _RequestErrorBase
except ImportError:  # pragma: no cover - exercised by the pushed-handler test in a subprocess
    _RequestErrorBase = ValueError  # type: ignore[assignment,misc]

__all__ = [
    "EndpointHandler",
    "ErrorResponse",
    "MAX_BATCH_REQUESTS",
    "PreparedRequest",
    "RecommendBatchRequest",
    "RecommendBatchResponse",
    "RecommendRequest",
    "RecommendResponse",
    "Recommender",
    "RequestError",
    "ScoredItem",
    "validation_error",
]

logger = logging.getLogger(__name__)

MAX_BATCH_REQUESTS = 1024  # requests per /v1/recommend/batch body
# What one more recommend() call costs, in padded prompt interactions (measured on the small preset, CPU:
# ~40 ms of fixed prefill, decode-step and search cost against ~0.4 ms per interaction of a batch's prompts)
CALL_COST_INTERACTIONS = 100
ItemId = Union[StrictStr, StrictInt]  # numeric ids of JSON clients become strings, as in the pipeline


class RequestError(_RequestErrorBase):
    """A request that cannot be answered as given: names the field (a dotted path) and the value."""

    def __init__(self, field: str, value: Any, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.value, self.message, self.status = field, value, message, status

    def to_dict(self) -> dict[str, Any]:
        value = self.value if isinstance(self.value, (str, int, float, bool, type(None))) else repr(self.value)[:200]
        return {"error": {"field": self.field, "value": value, "message": self.message}}


class RecommendRequest(BaseModel):
    """One user's recent history (oldest first) and what to recommend next."""

    model_config = ConfigDict(extra="forbid")

    history: list[tuple[StrictStr, ItemId]] = Field(
        min_length=1, description="(behavior, item_id) pairs, oldest first",
        examples=[[["click", "sku1"], ["cart", "sku2"]]],
    )
    behavior: StrictStr | None = Field(None, description="requested behavior (default: the checkpoint's target)")
    top_k: StrictInt = Field(10, ge=1, description="items to return, at most the catalogue size")
    num_beams: StrictInt | None = Field(None, ge=1, description="beam width (default: the server's, raised to top_k)")
    exclude: list[ItemId] = Field(default_factory=list, description="items never to return")
    exclude_history: bool = Field(False, description="also leave out the items of the history")
    unknown_items: Literal["skip", "error"] = Field(
        "error", description="history entries the checkpoint does not know: drop them, or refuse the request"
    )


class RecommendBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[RecommendRequest] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="summed log-probability of the item's semantic-ID codes")


class RecommendResponse(BaseModel):
    items: list[ScoredItem] = Field(description="best first")
    model: str = Field(description="checkpoint name, or repo@revision")
    truncated: bool = Field(False, description="the history was cut to the most recent max_history interactions")


class RecommendBatchResponse(BaseModel):
    results: list[RecommendResponse]


class ErrorDetail(BaseModel):
    field: str
    value: Any = None
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request, in the terms of `model.recommend`."""

    history: list[tuple[str, str]]
    behavior: str
    top_k: int
    num_beams: int
    exclude: frozenset[str] = field(default_factory=frozenset)
    truncated: bool = False


def length_runs(lengths: Sequence[int], call_cost: float) -> list[list[int]]:
    """Positions of `lengths` in calls of similar length: fewest padded interactions plus `call_cost` per call.

    One call pads every prompt to its longest, and real histories are mostly short with a long tail (on
    retailrocket's test split: median 10, a fifth at 40-50), so a mixed batch spends most of its prefill on
    padding. Over the lengths in sorted order the best split into runs is a small dynamic programme.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best, cut = [0.0] + [math.inf] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + call_cost + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    runs, end = [], len(order)
    while end:
        runs.append(order[cut[end] : end])
        end = cut[end]
    return runs[::-1]


class Recommender:
    """A loaded checkpoint behind the service's rules: `prepare` checks one request, `run` answers many.

    The rules are the library's: a known behavior, top_k in 1..catalogue size, num_beams >= top_k,
    unknown history entries refused or skipped, a history cut to the most recent `max_history`.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, max_history: int | None = None,
                 num_beams: int = 20, max_num_beams: int = 256, call_cost: float = CALL_COST_INTERACTIONS) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.call_cost = call_cost
        self.max_history = max_history if max_history is not None else default_max_history(model, tokenizer)
        if self.max_history < 1:
            raise ValueError(f"max_history must be at least 1, got {self.max_history}")
        self.num_items = len(tokenizer.item_index)
        self.behaviors = list(tokenizer.behaviors)
        self.num_beams, self.max_num_beams = num_beams, max_num_beams
        self.calls = 0  # recommend() calls so far (the server's metrics count them per micro-batch)

    def prepare(self, request: RecommendRequest, prefix: str = "") -> PreparedRequest:
        """The request in `recommend()`'s terms, or a `RequestError` naming the field and value."""
        behavior = self.tokenizer.target_behavior if request.behavior is None else request.behavior
        if behavior not in self.behaviors:
            raise RequestError(f"{prefix}behavior", behavior, f"unknown behavior {behavior!r}; known: {self.behaviors}")
        if request.top_k > self.num_items:
            raise RequestError(f"{prefix}top_k", request.top_k,
                               f"top_k must be in 1..{self.num_items} (the catalogue size), got {request.top_k}")
        num_beams = max(self.num_beams, request.top_k) if request.num_beams is None else request.num_beams
        if not request.top_k <= num_beams <= self.max_num_beams:
            raise RequestError(f"{prefix}num_beams", num_beams,
                               f"num_beams must be in top_k..{self.max_num_beams} ({request.top_k}..), got {num_beams}")
        history = self._known_history(request, prefix)
        return PreparedRequest(
            history=history, behavior=behavior, top_k=request.top_k, num_beams=num_beams,
            exclude=frozenset(str(item) for item in request.exclude)
            | (frozenset(item for _, item in history) if request.exclude_history else frozenset()),
            truncated=len(history) > self.max_history,
        )

    def _known_history(self, request: RecommendRequest, prefix: str) -> list[tuple[str, str]]:
        items = [str(item) for _, item in request.history]
        known = (self.tokenizer.item_index.rows(items) >= 0).tolist()  # one lookup for the whole history
        kept = []
        for position, ((behavior, _), item) in enumerate(zip(request.history, items)):
            if behavior in self.behaviors and known[position]:
                kept.append((behavior, item))
            elif request.unknown_items == "error":
                bad_behavior = behavior not in self.behaviors
                raise RequestError(
                    f"{prefix}history.{position}.{0 if bad_behavior else 1}", behavior if bad_behavior else item,
                    f"unknown behavior {behavior!r}; known: {self.behaviors}" if bad_behavior else
                    f"unknown item {item!r}: not in the checkpoint's item index (send unknown_items='skip' to drop it)",
                )
        if not kept:
            raise RequestError(f"{prefix}history", len(request.history),
                               f"none of the {len(request.history)} interactions is known to the checkpoint")
        return kept

    def run(self, batch: Sequence[PreparedRequest]) -> list[RecommendResponse | RequestError]:
        """Answer prepared requests with `recommend()` calls per beam width; a failure stays with its request.

        Requests of one call share the beam width and differ in anything else: behavior and exclusions
        are per history, and each list is the top_k prefix of the same num_beams ranking. Requests of one
        width are split into runs of similar history length (`length_runs`) where that saves more padding
        than the extra call costs.
        """
        answers: list[RecommendResponse | RequestError | None] = [None] * len(batch)
        widths: dict[int, list[int]] = {}
        for index, request in enumerate(batch):
            widths.setdefault(request.num_beams, []).append(index)
        groups = [(num_beams, [same_width[i] for i in run])
                  for num_beams, same_width in widths.items()
                  for run in length_runs([min(len(batch[i].history), self.max_history) for i in same_width],
                                         self.call_cost)]
        for num_beams, indices in groups:
            try:
                lists = self._recommend([batch[i] for i in indices], num_beams)
            except Exception:  # noqa: BLE001 - find the request that failed by decoding each alone
                if len(indices) == 1:
                    lists = [self._failure(batch[indices[0]])]
                else:
                    lists = [self._alone(batch[i]) for i in indices]
            for i, ranked in zip(indices, lists):
                answers[i] = ranked if isinstance(ranked, RequestError) else self._response(batch[i], ranked)
        return answers  # type: ignore[return-value]

    def _recommend(self, requests: Sequence[PreparedRequest], num_beams: int) -> list[list[tuple[str, float]]]:
        exclude = [r.exclude for r in requests]
        self.calls += 1
        return self.model.recommend(
            self.tokenizer, [r.history for r in requests], behavior=[r.behavior for r in requests],
            top_k=max(r.top_k for r in requests), num_beams=num_beams, max_history=self.max_history,
            # None unless someone excludes: an exclusion list costs a pass over the catalogue (~50 ms at 30k items)
            exclude_items=exclude if any(exclude) else None, batch_size=len(requests),
        )

    def _alone(self, request: PreparedRequest) -> list[tuple[str, float]] | RequestError:
        try:
            return self._recommend([request], request.num_beams)[0]
        except Exception:  # noqa: BLE001 - reported to this request's client only
            return self._failure(request)

    @staticmethod
    def _failure(request: PreparedRequest) -> RequestError:
        logger.exception("recommend() failed for one request (behavior=%s, top_k=%d)", request.behavior, request.top_k)
        return RequestError("request", None, "the model failed on this request (logged on the server)", status=500)

    def _response(self, request: PreparedRequest, ranked: list[tuple[str, float]]) -> RecommendResponse:
        return RecommendResponse(
            items=[ScoredItem(item_id=item, score=score) for item, score in ranked[: request.top_k]],
            model=self.name, truncated=request.truncated,
        )

    def warm_up(self) -> None:
        """One decode of a short history, so that the first client does not pay for lazy set-up."""
        item = next(iter(self.tokenizer.item_index))
        request = RecommendRequest(history=[(self.behaviors[0], item)], top_k=min(10, self.num_items))
        [answer] = self.run([self.prepare(request)])
        if isinstance(answer, RequestError):
            raise RuntimeError(f"warm-up decode failed: {answer}")

    def answer(self, body: Any) -> dict[str, Any]:
        """A JSON body (`RecommendRequest` or `RecommendBatchRequest` shape) -> the JSON answer, decoded together."""
        try:
            if isinstance(body, dict) and "requests" in body:
                requests = RecommendBatchRequest.model_validate(body).requests
                prefixes = [f"requests.{i}." for i in range(len(requests))]
            else:
                requests, prefixes = [RecommendRequest.model_validate(body)], [""]
        except ValidationError as error:
            raise validation_error(error.errors(include_url=False)) from None
        answers = self.run([self.prepare(request, prefix) for request, prefix in zip(requests, prefixes)])
        for answer in answers:
            if isinstance(answer, RequestError):
                raise answer
        if len(prefixes) == 1 and not prefixes[0]:
            return answers[0].model_dump()
        return RecommendBatchResponse(results=answers).model_dump()  # type: ignore[arg-type]


def validation_error(errors: Sequence[dict[str, Any]]) -> RequestError:
    """The first problem pydantic found (in `ValidationError.errors()` form), naming the dotted field and value.

    FastAPI prefixes locations with "body"; malformed JSON is a 400 about the whole body.
    """
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", first["msg"])
        return RequestError("body", None, f"malformed JSON: {reason}", status=400)
    location = [str(part) for part in first["loc"]]
    return RequestError(".".join(location[1:] if location[:1] == ["body"] else location) or "body",
                        first.get("input"), first["msg"])


def default_max_history(model: Any, tokenizer: Any) -> int:
    """The history length the checkpoint was trained with, else as many interactions as its positions hold."""
    trained = getattr(model.config, "max_history", None)
    if trained:
        return int(trained)
    return (model.config.max_position_embeddings - 1) // (tokenizer.num_levels + 1)


def load_checkpoint(path: str) -> tuple[Any, Any]:
    """Model (eval mode) and tokenizer: gamer_hf's verified loader when installed, else the repo's remote code."""
    try:
        from gamer_hf.loading import load_gamer
    except ImportError:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
        return model, AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    return load_gamer(path)


class EndpointHandler:
    """Hugging Face Inference Endpoints custom handler: the server's request and response shapes.

    `data` is a `RecommendRequest` body (or a `{"requests": [...]}` batch), optionally wrapped in
    `{"inputs": ...}` as Inference Endpoints send it; a bad request raises `RequestError` (a
    ValueError) naming the field and value.
    """

    def __init__(self, path: str = "") -> None:
        model, tokenizer = load_checkpoint(path or ".")
        self.recommender = Recommender(model, tokenizer, name=Path(path or ".").resolve().name)
        self.recommender.warm_up()

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        body = data.get("inputs", data) if isinstance(data, dict) else data
        return self.recommender.answer(body)
