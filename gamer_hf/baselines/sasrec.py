"""SASRec (Kang & McAuley, 2018) with a full softmax over the catalogue, and its behavior-aware variant.

Plain: the input at position t is item_t + position_t; a causal pre-norm transformer reads the
sequence and the hidden state at t scores every item (tied item embeddings) as the next one.
Behaviors are ignored, so every requested behavior gets the same list.

Behavior-aware (`use_behaviors=True`): the input also adds the behavior of interaction t and a
"query" embedding of the behavior *requested next* (the behavior of interaction t + 1 in training,
the asked behavior at inference). The query enters at the input of the last position, so all
layers condition on it, and training stays one parallel pass over all positions; knowing the next
behavior at t leaks nothing, because position t + 1 shows that behavior anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vocabulary import NUM_SPECIAL, PAD

__all__ = ["SASRecConfig", "SASRec"]


@dataclass
class SASRecConfig:
    """Architecture of a SASRec baseline; `num_items` / `num_behaviors` count the specials / pad row."""

    num_items: int
    num_behaviors: int
    use_behaviors: bool = False
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2
    max_length: int = 50

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        for name in ("num_items", "num_behaviors", "hidden_size", "num_layers", "num_heads", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    """Pre-norm causal self-attention + GELU feed-forward, both residual."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.heads = config.num_heads
        self.dropout = config.dropout
        self.attn_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, length, 3, self.heads, d // self.heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(batch, length, d)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """Causal transformer over item ids whose hidden states score the whole catalogue."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.items = nn.Embedding(config.num_items, d, padding_idx=PAD)
        self.positions = nn.Embedding(config.max_length, d)
        if config.use_behaviors:
            self.behaviors = nn.Embedding(config.num_behaviors, d, padding_idx=PAD)
            self.queries = nn.Embedding(config.num_behaviors, d, padding_idx=PAD)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])

    def forward(
        self, items: torch.Tensor, behaviors: torch.Tensor | None = None, next_behaviors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states [batch, length, hidden]; position t summarises interactions 0..t.

        The behavior variant needs `behaviors` (of each interaction) and `next_behaviors` (requested
        after each position; pad id 0 where there is none).
        """
        length = items.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length={self.config.max_length}")
        x = self.items(items) + self.positions(torch.arange(length, device=items.device))
        if self.config.use_behaviors:
            if behaviors is None or next_behaviors is None:
                raise ValueError("the behavior-aware SASRec needs behaviors and next_behaviors")
            x = x + self.behaviors(behaviors) + self.queries(next_behaviors)
        x = self.drop(x * (items != PAD).unsqueeze(-1))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every real item (specials get -inf) from hidden states [..., hidden]."""
        logits = hidden @ self.items.weight.T
        logits[..., :NUM_SPECIAL] = float("-inf")
        return logits
