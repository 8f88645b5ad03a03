"""Register the "gamer" model type with the Transformers Auto classes (idempotent)."""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from .modeling import GamerConfig, GamerForCausalLM, GamerModel, GamerTokenizerFast

__all__ = ["register_auto_classes"]


def register_auto_classes() -> None:
    AutoConfig.register("gamer", GamerConfig, exist_ok=True)
    AutoModel.register(GamerConfig, GamerModel, exist_ok=True)
    AutoModelForCausalLM.register(GamerConfig, GamerForCausalLM, exist_ok=True)
    AutoTokenizer.register(GamerConfig, fast_tokenizer_class=GamerTokenizerFast, exist_ok=True)
