"""The GAMER model definition; these files ship inside every checkpoint (remote code)."""

from .configuration_gamer import GAMER_PRESETS, GamerConfig
from .tokenization_gamer import GamerTokenizerFast

__all__ = ["GAMER_PRESETS", "GamerConfig", "GamerTokenizerFast"]
