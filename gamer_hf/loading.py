"""Inference helpers the CLI and the server share: load a checkpoint on the best device, parse the
CLI's history syntax, and answer one history with typed errors (`InputError` for a request the
checkpoint cannot answer, e.g. an unknown item or behavior)."""

from __future__ import annotations

import os

from .checkpoint import default_device, load_checkpoint
from .errors import InputError
from .modeling import GamerForCausalLM, GamerTokenizerFast

Ranked = list[tuple[str, float]]

__all__ = ["default_device", "load_gamer", "parse_history", "recommend_items", "unknown_interactions"]


def load_gamer(path: str | os.PathLike, device: str | None = None) -> tuple[GamerForCausalLM, GamerTokenizerFast]:
    """Model in eval mode on `device` (default: CUDA when present) and its tokenizer, through the one
    checkpoint loader (`gamer_hf.checkpoint.load_checkpoint`): incomplete or corrupt folders raise CheckpointError."""
    return load_checkpoint(path, device=device or default_device())


def parse_history(text: str) -> list[tuple[str, str]]:
    """'click:sku1,cart:sku2' -> [('click', 'sku1'), ('cart', 'sku2')]."""
    pairs = []
    for position, chunk in enumerate(part.strip() for part in text.split(",") if part.strip()):
        behavior, sep, item = chunk.partition(":")
        if not sep or not behavior or not item:
            raise InputError(f"history entry {position + 1} {chunk!r} must look like behavior:item_id")
        pairs.append((behavior.strip(), item.strip()))
    return pairs


def unknown_interactions(tokenizer: GamerTokenizerFast, history: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (behavior, item) pairs of `history` the checkpoint cannot encode (`on_unknown="skip"` drops them).

    Items are looked up in one vectorized `ItemIndex.rows` call, not one binary search each.
    """
    rows = tokenizer.item_index.rows([item for _, item in history])
    return [(behavior, item) for (behavior, item), row in zip(history, rows.tolist())
            if row < 0 or behavior not in tokenizer.behaviors]


def recommend_items(
    model: GamerForCausalLM,
    tokenizer: GamerTokenizerFast,
    history: list[tuple[str, str]],
    *,
    behavior: str | None = None,
    top_k: int = 10,
    num_beams: int = 20,
    exclude_history: bool = False,
    on_unknown: str = "raise",
    max_history: int | None = None,
) -> tuple[str, Ranked]:
    """The requested behavior (default: the target behavior) and the top-`top_k` (item, score) pairs, best first.

    `num_beams` is raised to `top_k` when smaller; `max_history` (default: the length the checkpoint
    was trained with) keeps the most recent interactions. The model's own ValueErrors (unknown item or
    behavior, a malformed history) become InputError, so callers catch one type.
    """
    behavior = behavior or tokenizer.target_behavior
    try:
        [ranked] = model.recommend(tokenizer, [history], behavior=behavior, top_k=top_k,
                                   num_beams=max(num_beams, top_k), exclude_history=exclude_history,
                                   on_unknown=on_unknown, max_history=max_history)
    except ValueError as error:
        raise InputError(str(error)) from None
    return behavior, ranked
