"""gamer_hf: GAMER generative multi-behavior recommendation for the Hugging Face ecosystem.

Importing the package registers the "gamer" model type with the Auto classes, so that
`AutoModel.from_pretrained(dir)` works without `trust_remote_code`, and the
`pipeline("next-item-recommendation", ...)` task.
"""

from . import modeling
from .modeling import *  # noqa: F403  (the public model API: GamerConfig, GamerForCausalLM, ...)
from .pipeline import register_pipeline
from .registration import register_auto_classes

__version__ = "0.1.0"

register_auto_classes()
register_pipeline()

__all__ = [*modeling.__all__, "register_auto_classes", "register_pipeline", "__version__"]
