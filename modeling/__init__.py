"""The GAMER model definition; these files ship inside every checkpoint (remote code)."""

from .cache_gamer import GamerCache, GamerStaticCache
from .configuration_gamer import GAMER_PRESETS, GamerConfig, GamerVocabLayout
from .generation_gamer import make_prefix_allowed_tokens_fn
from .modeling_gamer import GamerForCausalLM, GamerModel, GamerPreTrainedModel, GamerTokenRoles
from .tokenization_gamer import GamerTokenizerFast
from .trie_gamer import GamerConstrainedLogitsProcessor, ItemTrie

__all__ = [
    "GAMER_PRESETS",
    "GamerCache",
    "GamerConfig",
    "GamerConstrainedLogitsProcessor",
    "GamerForCausalLM",
    "GamerModel",
    "GamerPreTrainedModel",
    "GamerStaticCache",
    "GamerTokenRoles",
    "GamerTokenizerFast",
    "GamerVocabLayout",
    "ItemTrie",
    "make_prefix_allowed_tokens_fn",
]
