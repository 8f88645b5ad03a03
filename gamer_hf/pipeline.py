"""Register the "next-item-recommendation" pipeline for this process (idempotent).

The pipeline itself lives in `modeling/pipeline_gamer.py`, which ships inside every checkpoint so
that users without gamer_hf reach it through remote code; importing gamer_hf registers the
installed copy, so that `pipeline("next-item-recommendation", model=DIR)` needs no remote code.
"""

from __future__ import annotations

from transformers import AutoModelForCausalLM
from transformers.pipelines import PIPELINE_REGISTRY

from .modeling.pipeline_gamer import TASK, NextItemRecommendationPipeline

__all__ = ["TASK", "NextItemRecommendationPipeline", "register_pipeline"]


def register_pipeline() -> None:
    """Make `pipeline("next-item-recommendation", ...)` available; a task already registered is kept."""
    if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=NextItemRecommendationPipeline,
                                            pt_model=AutoModelForCausalLM)
