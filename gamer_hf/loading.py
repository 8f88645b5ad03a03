"""Load a GAMER checkpoint directory (model + tokenizer with its item index) for inference."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .modeling import GamerForCausalLM, GamerTokenizerFast

__all__ = ["load_gamer", "parse_history"]


def load_gamer(path: str | os.PathLike, device: str | None = None) -> tuple[GamerForCausalLM, GamerTokenizerFast]:
    """Model in eval mode and its tokenizer; refuses folders that are not complete checkpoints."""
    folder = Path(path)
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer_config.json", "item_index.json")
               if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a GAMER checkpoint: missing {', '.join(missing)}")
    model = GamerForCausalLM.from_pretrained(folder).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), GamerTokenizerFast.from_pretrained(folder)


def parse_history(text: str) -> list[tuple[str, str]]:
    """'click:sku1,cart:sku2' -> [('click', 'sku1'), ('cart', 'sku2')]."""
    pairs = []
    for position, chunk in enumerate(part.strip() for part in text.split(",") if part.strip()):
        behavior, sep, item = chunk.partition(":")
        if not sep or not behavior or not item:
            raise ValueError(f"history entry {position + 1} {chunk!r} must look like behavior:item_id")
        pairs.append((behavior.strip(), item.strip()))
    return pairs
