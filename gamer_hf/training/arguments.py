"""`TrainArguments`: everything `gamer-hf train` and `gamer_hf.training.train` accept.

One flat dataclass in `HfArgumentParser` style, so the same fields work as command-line flags,
as keys of a YAML recipe (`--config recipe.yaml`) and as Python keyword arguments. Only the
fields a GAMER user tunes are exposed; the rest of `transformers.TrainingArguments` is fixed by
`runner.py` (eval loss as the selection metric, best model loaded at the end, AdamW, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from gamer_hf.data.split_rows import BLOCK_ROWS, CACHE_BLOCKS
from gamer_hf.errors import ConfigurationError

from .eval_sample import DEFAULT_MAX_EVAL_SAMPLES

__all__ = ["ABLATIONS", "PRESET_DEFAULT", "RESUME_LATEST", "TrainArguments"]

# Ablation name -> GamerConfig overrides (DESIGN.md section 3). "tiger" switches every GAMER
# component off: a plain decoder over behavior + code tokens.
ABLATIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "no_cross_level": {"cross_level_layers": []},
    "no_behavior_injection": {"behavior_injection_layers": []},
    "dense_ffn": {"use_expert_ffn": False},
    "tiger": {"cross_level_layers": [], "behavior_injection_layers": [], "use_expert_ffn": False},
}

PRESET_DEFAULT = "small"

# resume_from_checkpoint values that mean "the newest checkpoint under <output_dir>/checkpoints".
# "auto" starts from scratch when there is none (re-runnable scripts); the others require one.
RESUME_LATEST = ("auto", "true", "latest")


@dataclass
class TrainArguments:
    data: str = field(metadata={"help": "prepared dataset folder (written by `gamer-hf prepare`)"})
    output_dir: str = field(
        metadata={"help": "final model folder; intermediate checkpoints go to <output_dir>/checkpoints"}
    )
    tokenizer: Optional[str] = field(
        default=None,
        metadata={"help": "tokenizer folder from `gamer-hf semantic-ids`; required unless init_from is given "
                          "(then the checkpoint's tokenizer is the default)"},
    )
    init_from: Optional[str] = field(
        default=None, metadata={"help": "GAMER checkpoint folder to fine-tune instead of training from scratch"}
    )
    preset: Optional[Literal["tiny", "small", "base"]] = field(
        default=None,
        metadata={"help": f"model size for a new model (default {PRESET_DEFAULT}; 'base' is the paper's); "
                          "not allowed with init_from"},
    )
    ablation: Literal["none", "no_cross_level", "no_behavior_injection", "dense_ffn", "tiger"] = field(
        default="none",
        metadata={"help": "switch GAMER components off for a new model: cross-level layers, behavior injection, "
                          "expert FFN, or all of them (tiger: a plain decoder baseline)"},
    )
    dropout: Optional[float] = field(
        default=None,
        metadata={"help": "hidden, attention and expert-FFN dropout of a new model, in [0, 1) (default: the preset's); "
                          "small samples overfit at the presets' rates"},
    )
    max_history: Optional[int] = field(
        default=None,
        metadata={"help": "interactions per prompt (training rows keep max_history + 1); default: the value the "
                          "data was prepared with"},
    )
    on_unknown: Literal["raise", "skip"] = field(
        default="raise",
        metadata={"help": "items of the data missing from the tokenizer: refuse to train, or drop them"},
    )
    pack_sequences: bool = field(
        default=True,
        metadata={"help": "pack the sequences of a batch into shared rows (position_ids restarting per sequence) "
                          "wherever that saves rows of padding, as histories of mixed length do; the loss is "
                          "that of the padded batch"},
    )
    score_repeats: bool = field(
        default=True,
        metadata={"help": "score the codes of a training interaction whose item its sequence holds earlier; false "
                          "trains next-item prediction on new items only (where a repeat rule cannot answer), for "
                          "ranking with the history excluded (validation targets are scored either way)"},
    )
    num_train_epochs: float = field(default=10.0, metadata={"help": "epochs over the training sequences"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; overrides num_train_epochs when > 0"})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "training sequences per device and step"})
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "validation cases per device and batch (each expands to its target items)"}
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={"help": "micro-batches per optimizer step; global batch = per-device batch x this x processes"},
    )
    learning_rate: float = field(default=5e-4, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.04, metadata={"help": "fraction of the steps with linear warm-up, in [0, 1)"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Transformers scheduler name after warm-up"})
    early_stopping_patience: int = field(
        default=5, metadata={"help": "evaluations without a better selection metric (select_by) before stopping; "
                                     "0 = never stop"}
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "how much the validation loss must drop to count as better"}
    )
    select_by: Literal["loss", "ndcg"] = field(
        default="loss",
        metadata={"help": "pick the published checkpoint and early-stop on the validation loss, or on validation "
                          "NDCG@10 of recommend() over a fixed subset of validation cases (ranking_cases)"},
    )
    ranking_cases: int = field(default=500, metadata={"help": "select_by=ndcg: validation cases decoded per evaluation"})
    ranking_beams: int = field(default=20, metadata={"help": "select_by=ndcg: beam width of that decoding"})
    ranking_seed: Optional[int] = field(
        default=None,
        metadata={"help": "select_by=ndcg: seed of the ranking cases' draw (default: seed), fixed to select runs of "
                          "several training seeds on the same cases"},
    )
    ranking_exclude_history: bool = field(
        default=False,
        metadata={"help": "select_by=ndcg: decode those cases with the users' history items excluded, for a model used "
                          "that way (e.g. trained with score_repeats false)"},
    )
    eval_steps: Optional[int] = field(
        default=None,
        metadata={"help": "evaluate (and save) every N steps instead of every epoch, for runs with few long epochs"},
    )
    save_steps: Optional[int] = field(
        default=None, metadata={"help": "with eval_steps: save every N steps (a multiple of eval_steps; default equal)"}
    )
    save_total_limit: Optional[int] = field(
        default=2, metadata={"help": "checkpoints kept in <output_dir>/checkpoints during the run (the best one is "
                                     "always kept)"}
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": "keep <output_dir>/checkpoints as they are once the run has finished; by default a "
                          "completed run deletes them and a stopped one keeps only the newest (what resuming needs)"},
    )
    max_eval_samples: int = field(
        default=DEFAULT_MAX_EVAL_SAMPLES,
        metadata={"help": "validation cases scored at each evaluation: a fixed sample of the validation split, the "
                          "same every time; 0 = the whole split"},
    )
    shuffle_block_rows: int = field(
        default=BLOCK_ROWS,
        metadata={"help": "training rows are read and shuffled in blocks of this many consecutive rows (see "
                          "shuffle_buffer_blocks); smaller blocks give a more random order and more reads"},
    )
    shuffle_buffer_blocks: int = field(
        default=CACHE_BLOCKS,
        metadata={"help": "blocks in memory at once: each epoch takes the blocks in a random order, this many at a "
                          "time, and shuffles their rows together; a split of at most blocks x rows is fully "
                          "shuffled, a larger one within each buffer; memory grows with the buffer, not the split"},
    )
    measure_step_time: bool = field(
        default=True,
        metadata={"help": "time one training and one validation batch on a copy of the model before training, for "
                          "the plan's time estimate (the run itself is unchanged)"},
    )
    logging_steps: int = field(default=10, metadata={"help": "log the training loss every N steps"})
    seed: int = field(default=42, metadata={"help": "seed for model initialisation and data order"})
    use_cpu: bool = field(
        default=False,
        metadata={"help": "train on CPU even with a GPU present; set automatically when several processes are "
                          "launched on a machine without GPUs (CPU DDP over gloo)"},
    )
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision"})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision (GPU)"})
    report_to: str = field(default="none", metadata={"help": "'none' or a Transformers integration such as 'tensorboard'"})
    resume_from_checkpoint: Optional[str] = field(
        default=None,
        metadata={"help": "continue a killed run: a checkpoint folder, 'auto' (newest in <output_dir>/checkpoints, "
                          "or a fresh start when there is none) or 'true'/'latest' (newest, required). Resuming "
                          "unpickles optimizer and RNG state files with torch.load(weights_only=True): only resume "
                          "from checkpoints you wrote"},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "replace a finished model or earlier checkpoints in output_dir instead of refusing"},
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "worker processes that collate batches"})
    disable_tqdm: Optional[bool] = field(default=None, metadata={"help": "hide progress bars (default: shown)"})

    def __post_init__(self) -> None:
        if isinstance(self.resume_from_checkpoint, bool):  # YAML `true` / `false`
            self.resume_from_checkpoint = "true" if self.resume_from_checkpoint else None
        if self.resume_from_checkpoint is not None and self.resume_from_checkpoint.lower() == "false":
            self.resume_from_checkpoint = None
        if self.tokenizer is None and self.init_from is None:
            raise ValueError("tokenizer is required (a folder from `gamer-hf semantic-ids`) unless init_from is given")
        if self.init_from is not None and (self.preset is not None or self.ablation != "none"):
            raise ValueError(
                f"init_from={self.init_from} fixes the architecture; drop preset={self.preset!r} / "
                f"ablation={self.ablation!r}"
            )
        if self.init_from is not None and self.dropout is not None:
            raise ValueError(f"init_from={self.init_from} keeps its config's dropout; drop dropout={self.dropout}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation!r}; choose one of {sorted(ABLATIONS)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.bf16 and self.fp16:
            raise ValueError("choose at most one of bf16 and fp16")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        if self.select_by not in ("loss", "ndcg"):
            raise ValueError(f"select_by must be 'loss' or 'ndcg', got {self.select_by!r}")
        ignored = [name for name in ("ranking_cases", "ranking_beams", "ranking_seed", "ranking_exclude_history")
                   if getattr(self, name) != type(self).__dataclass_fields__[name].default]
        if ignored and self.select_by != "ndcg":
            raise ValueError(f"{', '.join(ignored)}: only the ranking selection reads it; set select_by='ndcg' or drop "
                             f"it (select_by is {self.select_by!r})")
        if self.ranking_cases < 1 or self.ranking_beams < 10:
            raise ValueError(f"ranking_cases must be >= 1 and ranking_beams >= 10, got {self.ranking_cases} and "
                             f"{self.ranking_beams}")
        if self.max_eval_samples < 0:
            raise ConfigurationError(f"max_eval_samples must be >= 0 (0 = the whole validation split), got "
                                     f"{self.max_eval_samples}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "shuffle_block_rows", "shuffle_buffer_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.save_steps is not None:
            if self.eval_steps is None:
                raise ValueError("save_steps needs eval_steps (without them, evaluation and saving happen every epoch)")
            if self.save_steps % self.eval_steps:
                raise ValueError(
                    f"save_steps={self.save_steps} must be a multiple of eval_steps={self.eval_steps}: the best "
                    "model is chosen among evaluated checkpoints"
                )

    @property
    def preset_name(self) -> str:
        return self.preset or PRESET_DEFAULT
