"""The "next-item-recommendation" pipeline: top-K items for (behavior, item) histories under a behavior.

    from transformers import pipeline

    recommender = pipeline("next-item-recommendation", model="org/gamer-shop", trust_remote_code=True)
    recommender([("click", "sku1"), ("cart", "sku2")], behavior="buy", top_k=5)
    # -> [{"item_id": "sku7", "score": -0.41}, ...]   (one list per history for a list of histories)

This file ships inside every checkpoint beside the model code, and the checkpoint's config.json
names it under `custom_pipelines`, so `pipeline()` finds the task through remote code where gamer_hf
is not installed. With gamer_hf installed, `import gamer_hf` registers the same class for the task
(`gamer_hf.pipeline.register_pipeline`) and no remote code is needed. Importing this module
registers nothing: a copy loaded from a checkpoint must not claim the task for the process.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import Pipeline

from .configuration_gamer import PIPELINE_TASK as TASK

__all__ = ["TASK", "NextItemRecommendationPipeline"]

DEFAULT_TOP_K = 10
DEFAULT_NUM_BEAMS = 20  # the reference decoding; raised to top_k when more items are asked for

Interaction = tuple[str, str]


class _Histories:
    """Histories of one call, wrapped so that `Pipeline.__call__` hands them over in one piece
    (a plain list would be split into single histories, losing `recommend`'s batched prefill)."""

    def __init__(self, histories: list[list[Interaction]]) -> None:
        self.histories = histories


def _is_pair(entry: Any) -> bool:
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(v, (str, int)) for v in entry)


def _is_single_history(inputs: Sequence[Any]) -> bool:
    """A history is a sequence of (behavior, item) pairs; a batch is a sequence of histories."""
    return len(inputs) == 0 or _is_pair(inputs[0])


def _history(entries: Any, index: int) -> list[Interaction]:
    if not isinstance(entries, (list, tuple)):
        raise TypeError(f"history {index} must be a list of (behavior, item_id) pairs, got {type(entries).__name__}")
    pairs = []
    for position, entry in enumerate(entries):
        if not _is_pair(entry):
            raise ValueError(f"history {index}, entry {position}: expected a (behavior, item_id) pair, got {entry!r}")
        pairs.append((str(entry[0]), str(entry[1])))
    return pairs


class NextItemRecommendationPipeline(Pipeline):
    """Top-K next items per history under a requested behavior, through GAMER's `recommend()`.

    Call with one history (a list of `(behavior, item_id)` pairs, oldest first) to get one list of
    `{"item_id", "score"}` dicts, best first, or with a list of histories to get one such list per
    history. Keyword arguments (at construction or per call): `behavior` (one name, or one per
    history; default: the target behavior), `top_k`, `num_beams`, `max_history`,
    `exclude_history`, `on_unknown` ("raise" or "skip" unknown items/behaviors). Scores are
    summed log-probabilities of the item's semantic-ID codes.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not callable(getattr(self.model, "recommend", None)):
            raise TypeError(
                f"{TASK} needs a GAMER causal LM with recommend(), got {type(self.model).__name__}; "
                "load it with AutoModelForCausalLM"
            )
        if not hasattr(self.tokenizer, "item_index"):
            raise TypeError(f"{TASK} needs the checkpoint's GAMER tokenizer (it holds the item index), "
                            f"got {type(self.tokenizer).__name__}")

    def __call__(self, histories: Sequence[Any], **kwargs: Any) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        if not isinstance(histories, (list, tuple)):
            raise TypeError(f"{TASK} takes a history (list of (behavior, item_id) pairs) or a list of histories, "
                            f"got {type(histories).__name__}")
        if _is_single_history(histories):
            return super().__call__(_Histories([_history(histories, 0)]), **kwargs)[0]
        return super().__call__(_Histories([_history(h, i) for i, h in enumerate(histories)]), **kwargs)

    def _sanitize_parameters(
        self,
        behavior: str | Sequence[str] | None = None,
        top_k: int | None = None,
        num_beams: int | None = None,
        max_history: int | None = None,
        exclude_history: bool | None = None,
        on_unknown: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        given = dict(behavior=behavior, top_k=top_k, num_beams=num_beams, max_history=max_history,
                     exclude_history=exclude_history, on_unknown=on_unknown)
        return {}, {name: value for name, value in given.items() if value is not None}, {}

    def preprocess(self, inputs: _Histories) -> dict[str, Any]:
        return {"histories": inputs.histories}

    def _forward(self, model_inputs: dict[str, Any], **params: Any) -> dict[str, Any]:
        top_k = params.pop("top_k", DEFAULT_TOP_K)
        num_beams = params.pop("num_beams", max(DEFAULT_NUM_BEAMS, top_k))
        ranked = self.model.recommend(self.tokenizer, model_inputs["histories"], top_k=top_k, num_beams=num_beams,
                                      **params)
        return {"ranked": ranked}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[list[dict[str, Any]]]:
        return [[{"item_id": item, "score": float(score)} for item, score in row] for row in model_outputs["ranked"]]
