"""Learned baselines scored by the same Evaluator, splits and cases as GAMER.

- `SASRecRecommender()`: SASRec, a causal transformer over the user's item ids with a full softmax
  over the catalogue (next-item cross-entropy);
- `SASRecRecommender(use_behaviors=True)`: the same with behavior embeddings on every interaction
  and the requested behavior as a query, so it ranks items per behavior.

TIGER-style generative retrieval and the GAMER ablations need no code here: they are GAMER configs
trained through `gamer_hf.training` (`TrainArguments.ablation`).

Typical use::

    from gamer_hf.baselines import SASRecRecommender, TrainingSettings
    sasrec = SASRecRecommender.fit_prepared(load_prepared("prepared/"), use_behaviors=True,
                                            settings=TrainingSettings(epochs=30, seed=1))
    report = Evaluator(prepared.splits["test"], prepared.metadata["behaviors"]).evaluate_all({"SASRec": sasrec})
"""

from .recommender import SASRecRecommender
from .sasrec import SASRec, SASRecConfig
from .trainer import FitResult, TrainingSettings
from .vocabulary import ItemVocabulary

__all__ = ["FitResult", "ItemVocabulary", "SASRec", "SASRecConfig", "SASRecRecommender", "TrainingSettings"]
