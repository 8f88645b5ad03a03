"""Load a GAMER checkpoint for inference on the best device, and parse the CLI's history syntax."""

from __future__ import annotations

import os

import torch

from .checkpoint import load_checkpoint
from .errors import InputError
from .modeling import GamerForCausalLM, GamerTokenizerFast

__all__ = ["default_device", "load_gamer", "parse_history"]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
