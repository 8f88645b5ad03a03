"""`gamer-hf train`: train GAMER on a prepared dataset; works unchanged under `accelerate launch`.

    gamer-hf train --data DIR --tokenizer DIR --output_dir DIR [--preset small] [--config recipe.yaml]
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml -m gamer_hf.cli train --config ...
"""

from __future__ import annotations

from accelerate import PartialState

from gamer_hf.training import TrainArguments, train

__all__ = ["TrainArguments", "run"]


def _loss(value: float | None) -> str:
    return "n/a (no evaluation ran)" if value is None else f"{value:.4f}"


def run(args: TrainArguments) -> int:
    result = train(args)
    if PartialState().is_main_process:
        print(f"trained {result.global_step} steps; best eval loss {_loss(result.best_metric)}, "
              f"final eval loss {_loss(result.final_eval_loss)}")
        print(f"saved the best model to {result.checkpoint_dir}")
        if result.kept_checkpoints:
            names = ", ".join(path.name for path in result.kept_checkpoints)
            print(f"checkpoints for resuming or inspection: {result.kept_checkpoints[0].parent} ({names})")
    return 0
