"""GAMER model configuration.

The vocabulary layout is fixed by the behavior table and the codebook sizes, so the model can
derive every token's role (pad, behavior, code level) from its id alone:

    [specials: <pad> <eos> <unk>] [one token per behavior] [level-1 codes] ... [level-K codes]
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedConfig

__all__ = [
    "CUSTOM_PIPELINES",
    "GamerConfig",
    "PIPELINE_TASK",
    "GAMER_PRESETS",
    "GamerVocabLayout",
    "NUM_SPECIAL_TOKENS",
    "save_with_remote_code",
    "write_remote_code",
]

NUM_SPECIAL_TOKENS = 3  # <pad>=0, <eos>=1, <unk>=2

# Named sizes. "base" is the paper's reference ("gamer-base": ~24.5M parameters with 4x256 codes
# and 3 behaviors); "tiny" is for unit tests, "small" for CPU benchmarks.
GAMER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, behavior_embedding_dim=16,
        cross_level_layers=[1], behavior_injection_layers=[0],
        hidden_dropout=0.0, attention_dropout=0.0, ffn_dropout=0.0,
    ),
    "small": dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, behavior_embedding_dim=32,
        cross_level_layers=[2, 3], behavior_injection_layers=[0, 1],
        hidden_dropout=0.1, attention_dropout=0.1, ffn_dropout=0.1,
    ),
    "base": dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=8, num_attention_heads=6,
        num_key_value_heads=3, head_dim=64, behavior_embedding_dim=64,
        cross_level_layers=[4, 5, 6, 7], behavior_injection_layers=[0, 1, 2, 3],
        hidden_dropout=0.2, attention_dropout=0.2, ffn_dropout=0.2,
    ),
}


@dataclass(frozen=True)
class GamerVocabLayout:
    """The one owner of the id layout; the config, the tokenizer, generation and the data code ask it.

    `[specials: <pad> <eos> <unk>] [one token per behavior] [level-1 codes] ... [level-K codes]`; behavior
    identity i + 1 belongs to the i-th behavior (0 means none/pad), and the target behavior is the one
    at the top level.
    """

    behavior_names: tuple[str, ...]
    behavior_levels: tuple[int, ...]
    codebook_sizes: tuple[int, ...]

    @property
    def num_behaviors(self) -> int:
        return len(self.behavior_names)

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def behavior_token_offset(self) -> int:
        return NUM_SPECIAL_TOKENS

    @property
    def code_token_offsets(self) -> list[int]:
        """Id of code 0 at each semantic-ID level."""
        offsets, start = [], NUM_SPECIAL_TOKENS + self.num_behaviors
        for size in self.codebook_sizes:
            offsets.append(start)
            start += size
        return offsets

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + self.num_behaviors + sum(self.codebook_sizes)

    def describe(self) -> str:
        return (f"{NUM_SPECIAL_TOKENS} specials + {self.num_behaviors} behaviors + {sum(self.codebook_sizes)} codes "
                f"= {self.vocab_size}")

    @property
    def target_behavior(self) -> str:
        return self.behavior_names[self.behavior_levels.index(max(self.behavior_levels))]

    def behavior_token_id(self, name: str) -> int:
        if name not in self.behavior_names:
            raise ValueError(f"unknown behavior {name!r}; known: {list(self.behavior_names)}")
        return NUM_SPECIAL_TOKENS + self.behavior_names.index(name)

    def code_token_ids(self, codes: Sequence[int]) -> list[int]:
        return [offset + code for offset, code in zip(self.code_token_offsets, codes)]

    # ----- the same rules over tensors of ids -----
    def is_behavior_token(self, input_ids: torch.Tensor) -> torch.Tensor:
        return (input_ids >= NUM_SPECIAL_TOKENS) & (input_ids < NUM_SPECIAL_TOKENS + self.num_behaviors)

    def behavior_identity(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Identity (1..B) of behavior tokens, 0 elsewhere."""
        return torch.where(self.is_behavior_token(input_ids), input_ids - NUM_SPECIAL_TOKENS + 1,
                           torch.zeros_like(input_ids))

    def item_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """0 special, 1 behavior token, 2..K+1 code of level 1..K (the expert route)."""
        offsets = torch.tensor(self.code_token_offsets, device=input_ids.device)
        code_level = torch.bucketize(input_ids.contiguous(), offsets, right=True)  # 0 below the first code
        position = torch.where(self.is_behavior_token(input_ids), torch.ones_like(input_ids), code_level + 1)
        return torch.where(input_ids < NUM_SPECIAL_TOKENS, torch.zeros_like(input_ids), position)

    def level_table(self) -> torch.Tensor:
        """Hierarchy level of behavior identity 0..B as integers (exact in any dtype); identity 0 gets -1."""
        return torch.tensor([-1, *self.behavior_levels], dtype=torch.long)


class GamerConfig(PreTrainedConfig):
    r"""
    Configuration of a GAMER decoder (Qwen3-style backbone + cross-level interaction layers +
    position-routed expert FFN). Use [`GamerConfig.from_preset`] to size it from a tokenizer.

    Args:
        behavior_names (`list[str]`): behaviors in identity order (identity = index + 1; 0 = none/pad).
        behavior_levels (`list[int]`): hierarchy level of each behavior (higher = stronger intent).
        codebook_sizes (`list[int]`): number of codes at each semantic-ID level (K = its length).
        cross_level_layers (`list[int]`): layers carrying the cross-level interaction layer (`[]` = off).
        behavior_injection_layers (`list[int]`): layers whose expert input is concatenated with a
            behavior embedding (`[]` = off).
        use_expert_ffn (`bool`): position-routed experts (K+2 per layer) or a single dense SwiGLU.
        use_augmentation (`bool`): recorded ablation switch read by the training pipeline.
        training_temperature (`float`): logits are divided by it in the loss only.
        max_history (`int`, *optional*): interactions per prompt the model was trained with (training
            rows keep one more); `recommend()` cuts histories to it by default. None: not recorded.
    """

    model_type = "gamer"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int | None = None
    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 8
    num_attention_heads: int = 6
    num_key_value_heads: int = 3
    head_dim: int = 64
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    tie_word_embeddings: bool = True
    rope_parameters: dict | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.2
    hidden_dropout: float = 0.2
    ffn_dropout: float = 0.2
    behavior_names: list[str] | None = None
    behavior_levels: list[int] | None = None
    codebook_sizes: list[int] | None = None
    cross_level_layers: list[int] | None = None
    behavior_injection_layers: list[int] | None = None
    behavior_embedding_dim: int = 64
    use_expert_ffn: bool = True
    use_augmentation: bool = True
    training_temperature: float = 0.7
    max_history: int | None = None
    pad_token_id: int | None = 0
    eos_token_id: int | None = 1
    bos_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.behavior_names is None:
            self.behavior_names = ["click", "cart", "buy"]
        if self.behavior_levels is None:
            self.behavior_levels = list(range(len(self.behavior_names)))
        if self.codebook_sizes is None:
            self.codebook_sizes = [256, 256, 256, 256]
        if self.cross_level_layers is None:
            self.cross_level_layers = list(range(max(0, self.num_hidden_layers - 4), self.num_hidden_layers))
        if self.behavior_injection_layers is None:
            self.behavior_injection_layers = list(range(min(4, self.num_hidden_layers)))
        if self.rope_parameters is None:
            self.rope_parameters = {"rope_type": "default", "rope_theta": 1_000_000.0}
        if self.vocab_size is None:
            self.vocab_size = self.layout.vocab_size
        super().__post_init__(**kwargs)
        self._check()

    def _check(self) -> None:
        """Refuse inconsistent values early, naming the field, rather than failing deep in a forward pass."""
        if len(self.behavior_names) != len(self.behavior_levels):
            raise ValueError(
                f"behavior_levels has {len(self.behavior_levels)} entries but behavior_names has "
                f"{len(self.behavior_names)}: give one level per behavior"
            )
        if len(set(self.behavior_names)) != len(self.behavior_names):
            raise ValueError(f"behavior_names must be unique, got {self.behavior_names}")
        top = max(self.behavior_levels) if self.behavior_levels else None
        if self.behavior_levels.count(top) != 1:
            raise ValueError(
                f"behavior_levels={self.behavior_levels}: exactly one behavior must hold the top level "
                "(it is the target behavior)"
            )
        if not self.codebook_sizes or any(size < 1 for size in self.codebook_sizes):
            raise ValueError(f"codebook_sizes must be a non-empty list of positive ints, got {self.codebook_sizes}")
        if self.vocab_size != self.layout.vocab_size:
            raise ValueError(f"vocab_size={self.vocab_size} does not match the layout: {self.layout.describe()}")
        for name in ("cross_level_layers", "behavior_injection_layers"):
            layers = getattr(self, name)
            bad = [layer for layer in layers if not 0 <= layer < self.num_hidden_layers]
            if bad:
                raise ValueError(f"{name} has layer indices {bad} outside [0, num_hidden_layers={self.num_hidden_layers})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        for name in ("attention_dropout", "hidden_dropout", "ffn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.training_temperature <= 0:
            raise ValueError(f"training_temperature must be > 0, got {self.training_temperature}")
        if self.max_history is not None:
            if isinstance(self.max_history, bool) or not isinstance(self.max_history, int) or self.max_history < 1:
                raise ValueError(f"max_history must be None or an int >= 1, got {self.max_history!r}")
            trained = (self.max_history + 1) * (self.num_code_levels + 1)
            if trained > self.max_position_embeddings:
                raise ValueError(
                    f"max_position_embeddings={self.max_position_embeddings} is smaller than the trained prompts: "
                    f"max_history={self.max_history} + 1 interactions of {self.num_code_levels + 1} tokens = {trained}"
                )

    # ----- vocabulary layout, derived (never stored twice) -----
    @property
    def layout(self) -> GamerVocabLayout:
        return GamerVocabLayout(tuple(self.behavior_names), tuple(self.behavior_levels), tuple(self.codebook_sizes))

    @property
    def num_behaviors(self) -> int:
        return len(self.behavior_names)

    @property
    def num_code_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def code_token_offsets(self) -> list[int]:
        return self.layout.code_token_offsets

    @property
    def max_prompt_interactions(self) -> int:
        """Most interactions a prompt can hold so that it, the behavior token and K codes fit the positions."""
        return (self.max_position_embeddings - 1 - self.num_code_levels) // (self.num_code_levels + 1)

    @property
    def custom_pipelines(self) -> dict[str, Any]:
        """The pipeline the checkpoint ships, for `pipeline()` without gamer_hf; empty once an installed
        gamer_hf registered the task, so that the installed pipeline runs without remote code."""
        from transformers.pipelines import PIPELINE_REGISTRY  # heavy: only when a pipeline is built

        # a fresh copy: `pipeline()` replaces the class names with classes in the dict it is given
        return {} if PIPELINE_TASK in PIPELINE_REGISTRY.supported_tasks else copy.deepcopy(CUSTOM_PIPELINES)

    @custom_pipelines.setter
    def custom_pipelines(self, value: Any) -> None:
        """Derived, never stored: config.json's copy is written by `write_remote_code`."""

    @property
    def target_behavior(self) -> str:
        return self.layout.target_behavior

    @classmethod
    def from_preset(cls, name: str, tokenizer: Any = None, **overrides: Any) -> "GamerConfig":
        """Build a named size; the tokenizer (if given) supplies behaviors and codebook sizes."""
        if name not in GAMER_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(GAMER_PRESETS)}")
        values: dict[str, Any] = dict(GAMER_PRESETS[name])
        if tokenizer is not None:
            values.update(
                behavior_names=list(tokenizer.behaviors),
                behavior_levels=list(tokenizer.behaviors.values()),
                codebook_sizes=list(tokenizer.codebook_sizes),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        values.update(overrides)
        return cls(**values)


# ----- remote code: what a checkpoint needs to load with trust_remote_code=True -----
REMOTE_CODE_FILES = (
    "configuration_gamer.py", "modeling_gamer.py", "tokenization_gamer.py", "generation_gamer.py", "cache_gamer.py",
    "pipeline_gamer.py", "trie_gamer.py", "item_index_gamer.py",
)
AUTO_MAP = {
    "AutoConfig": "configuration_gamer.GamerConfig",
    "AutoModel": "modeling_gamer.GamerModel",
    "AutoModelForCausalLM": "modeling_gamer.GamerForCausalLM",
    "AutoTokenizer": [None, "tokenization_gamer.GamerTokenizerFast"],
}
# How `transformers.pipeline()` finds a task a model ships (the layout `Pipeline.save_pretrained` writes).
PIPELINE_TASK = "next-item-recommendation"
CUSTOM_PIPELINES = {
    PIPELINE_TASK: {"impl": "pipeline_gamer.NextItemRecommendationPipeline", "pt": ["AutoModelForCausalLM"]}
}


def write_remote_code(save_directory: str | os.PathLike, json_name: str) -> None:
    """Copy the model-definition files next to a saved checkpoint and point `auto_map` at them.

    Transformers' own `register_for_auto_class` writes only the entries of the saving class;
    a GAMER checkpoint must load through every Auto class without gamer_hf installed.
    """
    here = Path(__file__).resolve().parent
    target = Path(save_directory)
    for name in REMOTE_CODE_FILES:
        source = here / name
        if source.resolve() != (target / name).resolve():
            shutil.copyfile(source, target / name)
    path = target / json_name
    payload = json.loads(path.read_text(encoding="utf-8"))
    if json_name == "config.json":
        payload.update(auto_map=AUTO_MAP, custom_pipelines=CUSTOM_PIPELINES)
    else:
        payload["auto_map"] = {"AutoTokenizer": AUTO_MAP["AutoTokenizer"]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


_HUB_KWARGS = ("repo_id", "commit_message", "commit_description", "token", "private", "create_pr", "revision")


def save_with_remote_code(obj: Any, save: Any, save_directory: str | os.PathLike, json_name: str,
                          args: tuple, kwargs: dict[str, Any]) -> Any:
    """`save_pretrained` with the remote-code files; `push_to_hub=True` uploads only after they are written.

    Transformers uploads from inside `save_pretrained`, before a subclass could add files, so the
    push is done here through `push_to_hub`, which saves again (with remote code) into a temp folder.
    """
    push = kwargs.pop("push_to_hub", False)
    hub = {key: kwargs.pop(key) for key in _HUB_KWARGS if key in kwargs}
    result = save(save_directory, *args, **kwargs)
    if kwargs.get("is_main_process", True):
        write_remote_code(save_directory, json_name)
        if push:
            obj.push_to_hub(hub.pop("repo_id", Path(save_directory).name), **hub)
    return result
