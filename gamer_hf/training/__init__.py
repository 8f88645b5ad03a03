"""Training GAMER with the Transformers Trainer: arguments, checkpoint safety, the published model.

Typical use::

    from gamer_hf.training import TrainArguments, train

    result = train(TrainArguments(data="runs/shop/prepared", tokenizer="runs/shop/tokenizer",
                                  output_dir="runs/shop/gamer-small", preset="small"))
    print(result.best_metric, result.checkpoint_dir)

`output_dir` then holds the best model (`from_pretrained`-loadable, with remote code),
`gamer_training.json` (data, behaviors, semantic IDs, arguments, losses) and `checkpoints/`.
"""

from .arguments import ABLATIONS, TrainArguments
from .checkpoints import CHECKPOINTS_SUBDIR, CheckpointError, list_checkpoints, resolve_resume, validate_checkpoint
from .output import TRAINING_INFO_FILE
from .ranking import RANKING_METRIC, RankingSelectionCallback
from .runner import TrainResult, train, training_arguments

__all__ = [
    "ABLATIONS",
    "CHECKPOINTS_SUBDIR",
    "TRAINING_INFO_FILE",
    "CheckpointError",
    "RANKING_METRIC",
    "RankingSelectionCallback",
    "TrainArguments",
    "TrainResult",
    "list_checkpoints",
    "resolve_resume",
    "train",
    "training_arguments",
    "validate_checkpoint",
]
