"""gamer_hf: GAMER generative multi-behavior recommendation for the Hugging Face ecosystem.

Importing the package registers the "gamer" model type with the Auto classes, so that
`AutoModel.from_pretrained(dir)` works without `trust_remote_code`.
"""

from .modeling import (
    GAMER_PRESETS,
    GamerConfig,
    GamerConstrainedLogitsProcessor,
    GamerForCausalLM,
    GamerModel,
    GamerPreTrainedModel,
    GamerTokenizerFast,
    ItemTrie,
    make_prefix_allowed_tokens_fn,
)
from .registration import register_auto_classes

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "GAMER_PRESETS",
    "GamerConfig",
    "GamerConstrainedLogitsProcessor",
    "GamerForCausalLM",
    "GamerModel",
    "GamerPreTrainedModel",
    "GamerTokenizerFast",
    "ItemTrie",
    "make_prefix_allowed_tokens_fn",
    "register_auto_classes",
    "__version__",
]
