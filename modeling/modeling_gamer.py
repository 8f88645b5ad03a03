"""GAMER: a Qwen3-style decoder over behavior and semantic-ID tokens, with cross-level
interaction layers (higher intents read lower ones) and position-routed expert FFNs.

Every token's role is a function of its id (see `GamerConfig`), so behavior identities,
levels and expert routes are derived from `input_ids` in training, prefill and cached
decoding alike; `generate()` passes them explicitly for the tokens it feeds one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_gamer import NUM_SPECIAL_TOKENS, GamerConfig, save_with_remote_code
from .generation_gamer import beam_search_items, score_candidate_items

__all__ = [
    "GamerPreTrainedModel",
    "GamerModel",
    "GamerForCausalLM",
    "GamerAttention",
    "GamerCrossLevelAttention",
    "GamerExpertFFN",
    "GamerDecoderLayer",
    "GamerTokenRoles",
    "GamerBeamCache",
]

# Key level of padding in the cross-level mask: above any real level, so pads are never read.
_PAD_KEY_LEVEL = 1e9


class GamerRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class GamerRotaryEmbedding(nn.Module):
    def __init__(self, config: GamerConfig) -> None:
        super().__init__()
        self.inv_freq = nn.Buffer(self.compute_inv_freq(config), persistent=False)

    @staticmethod
    def compute_inv_freq(config: GamerConfig) -> torch.Tensor:
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
):
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attn_weights = attn_weights.masked_fill(~attention_mask, torch.finfo(attn_weights.dtype).min)
        else:
            attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


class GamerTokenRoles:
    """Per-token ids derived from the vocabulary layout.

    - `item_position_ids`: 0 pad/special, 1 behavior token, 2..K+1 code level 1..K (expert route);
    - `behavior_ids`: identity (1..B) of the interaction a token belongs to, 0 for pads.
    """

    def __init__(self, item_position_ids: torch.Tensor, behavior_ids: torch.Tensor) -> None:
        self.item_position_ids = item_position_ids
        self.behavior_ids = behavior_ids

    @classmethod
    def from_input_ids(cls, input_ids: torch.Tensor, config: GamerConfig) -> "GamerTokenRoles":
        offsets = torch.tensor(config.code_token_offsets, device=input_ids.device)
        is_behavior = (input_ids >= NUM_SPECIAL_TOKENS) & (input_ids < config.behavior_token_offset + config.num_behaviors)
        code_level = torch.bucketize(input_ids.contiguous(), offsets, right=True)  # 0 below the first code token, l for level l
        item_position = torch.where(is_behavior, torch.ones_like(input_ids), code_level + 1)
        item_position = torch.where(input_ids < NUM_SPECIAL_TOKENS, torch.zeros_like(input_ids), item_position)
        own_identity = torch.where(is_behavior, input_ids - config.behavior_token_offset + 1, torch.zeros_like(input_ids))
        # A code token belongs to the nearest behavior token before it (cummax over its position).
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
        last_behavior = torch.where(is_behavior, positions, torch.full_like(positions, -1)).cummax(dim=-1).values
        inherited = own_identity.gather(-1, last_behavior.clamp(min=0))
        inherited = torch.where(last_behavior >= 0, inherited, torch.zeros_like(inherited))
        behavior_ids = torch.where(item_position >= 2, inherited, own_identity)
        return cls(item_position, behavior_ids)


class GamerBeamCache:
    """Decoding state for beams that share one prompt (used by `recommend()`).

    The prompt's keys and values stay `[batch, ...]` and are never copied per beam; each beam keeps
    only the few code tokens it generated. Attention over both parts is one softmax, so results
    equal attention over a per-beam copy of the cache, without the copies.
    """

    def __init__(self, prefill: Cache, attention_mask: torch.Tensor, cross_allowed: torch.Tensor | None) -> None:
        self.prefix = [(layer.keys, layer.values) for layer in prefill.layers]
        self.prefix_valid = attention_mask.bool()  # [B, T] keys of the prompt that self-attention reads
        self.cross_allowed = cross_allowed  # [B, T] prompt keys of strictly lower level than the request
        self.suffix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.beams = 1

    @property
    def batch_size(self) -> int:
        return self.prefix_valid.shape[0]

    def select_beams(self, rows: torch.Tensor, beams: int) -> None:
        """Keep the generated tokens of the beams in `rows` (indices into the current beams)."""
        self.suffix = {i: (k[rows], v[rows]) for i, (k, v) in self.suffix.items()}
        self.beams = beams

    def cross_has_key(self) -> torch.Tensor | None:
        if self.cross_allowed is None:
            return None
        return self.cross_allowed.any(-1).repeat_interleave(self.beams)[:, None]

    def attend(self, module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               cache_idx: int, cross_level: bool) -> torch.Tensor:
        """query/key/value: [B*beams, heads, 1, d] for one fed token; returns [B*beams, 1, heads*d]."""
        batch, beams, groups = self.batch_size, self.beams, module.num_key_value_groups
        prefix_k, prefix_v = self.prefix[cache_idx]
        kv_heads, dim = prefix_k.shape[1], prefix_k.shape[-1]
        # [B*beams, H, 1, d] -> [B, kv_heads, beams*groups, d]: every beam's queries meet the shared prompt once
        q = query.view(batch, beams, kv_heads, groups, dim).permute(0, 2, 1, 3, 4).reshape(batch, kv_heads, -1, dim)
        scores = (q @ prefix_k.transpose(-1, -2)) * module.scaling
        allowed = self.cross_allowed if cross_level else self.prefix_valid
        scores = scores.masked_fill(~allowed[:, None, None, :], torch.finfo(scores.dtype).min)
        if cross_level:  # generated codes share the requested level: never readable here
            weights = scores.softmax(-1)
            out = weights @ prefix_v
        else:
            if cache_idx in self.suffix:
                key = torch.cat([self.suffix[cache_idx][0], key], dim=-2)
                value = torch.cat([self.suffix[cache_idx][1], value], dim=-2)
            self.suffix[cache_idx] = (key, value)
            own = query.view(batch * beams, kv_heads, groups, dim) @ key.transpose(-1, -2) * module.scaling
            own = own.view(batch, beams, kv_heads, groups, -1).permute(0, 2, 1, 3, 4).reshape(batch, kv_heads, beams * groups, -1)
            weights = torch.cat([scores, own], dim=-1).softmax(-1)
            length = scores.shape[-1]
            mine = weights[..., length:].reshape(batch, kv_heads, beams, groups, -1).permute(0, 2, 1, 3, 4)
            out = weights[..., :length] @ prefix_v
            out = out + (mine.reshape(batch * beams, kv_heads, groups, -1) @ value).view(
                batch, beams, kv_heads, groups, dim).permute(0, 2, 1, 3, 4).reshape(batch, kv_heads, beams * groups, dim)
        out = out.view(batch, kv_heads, beams, groups, dim).permute(0, 2, 1, 3, 4)
        return out.reshape(batch * beams, 1, kv_heads * groups * dim)


class GamerAttention(nn.Module):
    """Causal grouped-query self-attention with per-head q/k RMSNorm (Qwen3)."""

    def __init__(self, config: GamerConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=config.attention_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=config.attention_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=config.attention_bias)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=config.attention_bias)
        self.q_norm = GamerRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = GamerRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def project(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        additive: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape)
        key = self.k_proj(hidden_states).view(hidden_shape)
        value = self.v_proj(hidden_states).view(hidden_shape)
        if additive is not None:  # behavior embeddings, added before q/k-norm and RoPE
            query, key, value = query + additive[0], key + additive[1], value + additive[2]
        query = self.q_norm(query).transpose(1, 2)
        key = self.k_norm(key).transpose(1, 2)
        value = value.transpose(1, 2)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        return query, key, value

    def attend(self, query, key, value, attention_mask, **kwargs) -> torch.Tensor:
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, _ = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        return attn_output.reshape(*attn_output.shape[:2], -1).contiguous()

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        query, key, value = self.project(hidden_states, position_embeddings)
        if isinstance(cache, GamerBeamCache):
            return self.o_proj(cache.attend(self, query, key, value, self.layer_idx, cross_level=False))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        return self.o_proj(self.attend(query, key, value, attention_mask, **kwargs))


class GamerCrossLevelAttention(GamerAttention):
    """Cross-level interaction: token i reads token j only if j <= i and level(j) < level(i).

    Behavior embeddings (per head) are added to q, k and v; the output is gated by SiLU(gate_proj(x)).
    Rows with no readable key (lowest-level tokens, pads) contribute exactly zero.
    """

    def __init__(self, config: GamerConfig, layer_idx: int, cache_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.cache_idx = cache_idx
        self.is_causal = False
        num_ids = config.num_behaviors + 1
        self.behavior_q = nn.Embedding(num_ids, config.num_attention_heads * self.head_dim)
        self.behavior_k = nn.Embedding(num_ids, config.num_key_value_heads * self.head_dim)
        self.behavior_v = nn.Embedding(num_ids, config.num_key_value_heads * self.head_dim)
        self.gate_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        level_mask: torch.Tensor,
        has_key: torch.Tensor,
        behavior_ids: torch.Tensor,
        cache: Cache | None = None,
    ) -> torch.Tensor:
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        additive = (
            self.behavior_q(behavior_ids).view(shape),
            self.behavior_k(behavior_ids).view(shape),
            self.behavior_v(behavior_ids).view(shape),
        )
        query, key, value = self.project(hidden_states, position_embeddings, additive)
        if isinstance(cache, GamerBeamCache):
            attn = self.o_proj(cache.attend(self, query, key, value, self.cache_idx, cross_level=True))
        else:
            if cache is not None:
                key, value = cache.update(key, value, self.cache_idx)
            attn = self.o_proj(self.attend(query, key, value, level_mask))
        return attn * F.silu(self.gate_proj(hidden_states)) * has_key.unsqueeze(-1).to(attn.dtype)


class GamerExpertFFN(nn.Module):
    """Position-routed SwiGLU experts (0 pad, 1 behavior token, 2..K+1 code levels); no gate, no aux loss.

    Tokens are grouped by expert and each group runs one matmul, so cost is a handful of dense
    matmuls whatever the batch. With `use_expert_ffn=False` it is a single dense SwiGLU.
    """

    def __init__(self, config: GamerConfig, input_size: int) -> None:
        super().__init__()
        self.num_experts = config.num_code_levels + 2 if config.use_expert_ffn else 1
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(self.num_experts, input_size, 2 * config.intermediate_size))
        self.down_proj = nn.Parameter(torch.empty(self.num_experts, config.intermediate_size, config.hidden_size))
        self.act_fn = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.ffn_dropout)

    def _expert(self, x: torch.Tensor, expert: int) -> torch.Tensor:
        gate, up = (x @ self.gate_up_proj[expert]).chunk(2, dim=-1)
        return self.dropout(self.act_fn(gate) * up) @ self.down_proj[expert]

    def forward(self, hidden_states: torch.Tensor, item_position_ids: torch.Tensor) -> torch.Tensor:
        if self.num_experts == 1:
            return self._expert(hidden_states, 0)
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        routes = item_position_ids.reshape(-1)
        order = torch.argsort(routes, stable=True)
        counts = torch.bincount(routes, minlength=self.num_experts).tolist()
        outputs = [
            self._expert(group, expert)
            for expert, group in enumerate(flat[order].split(counts))
            if counts[expert]
        ]
        if not outputs:
            return hidden_states.new_zeros(*hidden_states.shape[:-1], self.down_proj.shape[-1])
        grouped = torch.cat(outputs)  # in the compute dtype (bf16 under autocast)
        out = torch.empty_like(grouped)
        out[order] = grouped
        return out.view(*hidden_states.shape[:-1], -1)


class GamerDecoderLayer(nn.Module):
    def __init__(self, config: GamerConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = GamerAttention(config, layer_idx)
        self.input_layernorm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.cross_attn = None
        if layer_idx in config.cross_level_layers:
            cache_idx = config.num_hidden_layers + sorted(config.cross_level_layers).index(layer_idx)
            self.cross_attn = GamerCrossLevelAttention(config, layer_idx, cache_idx)
            self.cross_attn_layernorm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.behavior_embedding = None
        ffn_input = config.hidden_size
        if layer_idx in config.behavior_injection_layers:
            self.behavior_embedding = nn.Embedding(config.num_behaviors + 1, config.behavior_embedding_dim)
            ffn_input += config.behavior_embedding_dim
        self.mlp = GamerExpertFFN(config, ffn_input)
        self.post_attention_layernorm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        level_mask: torch.Tensor | None,
        has_key: torch.Tensor | None,
        roles: GamerTokenRoles,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, attention_mask, cache, **kwargs)
        hidden_states = hidden_states + self.dropout(residual)
        if self.cross_attn is not None:
            residual = self.cross_attn(
                self.cross_attn_layernorm(hidden_states), position_embeddings, level_mask, has_key,
                roles.behavior_ids, cache,
            )
            hidden_states = hidden_states + self.dropout(residual)
        ffn_input = self.post_attention_layernorm(hidden_states)
        if self.behavior_embedding is not None:
            # The behavior token itself gets id 0; code tokens get their interaction's identity.
            injected = torch.where(roles.item_position_ids >= 2, roles.behavior_ids, torch.zeros_like(roles.behavior_ids))
            ffn_input = torch.cat([ffn_input, self.behavior_embedding(injected)], dim=-1)
        return hidden_states + self.dropout(self.mlp(ffn_input, roles.item_position_ids))


class GamerPreTrainedModel(PreTrainedModel):
    config_class = GamerConfig
    config: GamerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["GamerDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    _can_compile_fullgraph = False

    def save_pretrained(self, save_directory, *args: Any, **kwargs: Any) -> None:
        """Save as usual, plus the remote-code files and a complete `auto_map` (pushed with them too)."""
        save_with_remote_code(self, super().save_pretrained, save_directory, "config.json", args, kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, GamerExpertFFN):
            init.normal_(module.gate_up_proj, mean=0.0, std=std)
            init.normal_(module.down_proj, mean=0.0, std=std)
        elif isinstance(module, GamerRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, GamerRotaryEmbedding):  # non-persistent buffers are rebuilt, not loaded
            init.copy_(module.inv_freq, module.compute_inv_freq(self.config))
        elif isinstance(module, GamerModel):
            init.copy_(module.level_table, module.compute_level_table(self.config))


class GamerModel(GamerPreTrainedModel):
    def __init__(self, config: GamerConfig) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([GamerDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = GamerRotaryEmbedding(config)
        self.level_table = nn.Buffer(self.compute_level_table(config), persistent=False)
        self.post_init()

    @staticmethod
    def compute_level_table(config: GamerConfig) -> torch.Tensor:
        """Level of behavior identity 0..B; identity 0 (pad) gets -1 so a pad query reads nothing."""
        return torch.tensor([-1.0] + [float(v) for v in config.behavior_levels])

    @property
    def _meta_cache_idx(self) -> int:
        return self.config.num_hidden_layers + len(self.config.cross_level_layers)

    def _ensure_cache_layers(self, cache: Cache) -> None:
        """generate() sizes its DynamicCache by num_hidden_layers; cross-level K/V and token levels need more."""
        while len(cache.layers) <= self._meta_cache_idx:
            cache.layers.append(DynamicLayer())

    def _level_mask(
        self,
        roles: GamerTokenRoles,
        attention_mask: torch.Tensor | None,
        cache: Cache | None,
        query_positions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean [B, 1, Q, KV] mask for the cross-level layers and [B, Q] 'has any key' flags."""
        query_level = self.level_table[roles.behavior_ids]
        key_level = torch.where(roles.behavior_ids > 0, query_level, torch.full_like(query_level, _PAD_KEY_LEVEL))
        key_order = query_positions.to(query_level.dtype)
        if cache is not None:
            meta = torch.stack([key_level, key_order], dim=1)[:, :, :, None]  # [B, 2, Q, 1]
            meta, _ = cache.update(meta, meta, self._meta_cache_idx)
            key_level, key_order = meta[:, 0, :, 0], meta[:, 1, :, 0]
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] == key_level.shape[-1]:
            key_level = torch.where(attention_mask.bool(), key_level, torch.full_like(key_level, _PAD_KEY_LEVEL))
        causal = key_order[:, None, :] <= query_positions.to(key_order.dtype)[:, :, None]
        allowed = causal & (key_level[:, None, :] < query_level[:, :, None])
        has_key = allowed.any(-1)
        # A row with no key would be NaN in softmax: let it read its own position, then zero it by `has_key`.
        own = key_order[:, None, :] == query_positions.to(key_order.dtype)[:, :, None]
        allowed = allowed | (own & ~has_key[..., None])
        return allowed[:, None], has_key

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        behavior_ids: torch.LongTensor | None = None,
        item_position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if input_ids is None:
            raise ValueError("GamerModel needs input_ids: token roles (behavior, code level) are derived from them")
        cache = cache if cache is not None else past_key_values
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        if behavior_ids is None or item_position_ids is None:
            roles = GamerTokenRoles.from_input_ids(input_ids, self.config)
        else:
            roles = GamerTokenRoles(item_position_ids, behavior_ids)
        inputs_embeds = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if isinstance(cache, GamerBeamCache):
            if position_ids is None:
                raise ValueError("decoding with a GamerBeamCache needs explicit position_ids")
            return self._run_layers(inputs_embeds, position_ids, None, None, cache.cross_has_key(), roles, cache, kwargs)
        if use_cache and cache is None:
            cache = DynamicCache()
        if cache is not None:
            self._ensure_cache_layers(cache)
        past_seen = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
            else:
                position_ids = torch.arange(past_seen, past_seen + input_ids.shape[1], device=input_ids.device)[None]
        position_ids = position_ids.expand(input_ids.shape[0], -1)
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        level_mask = has_key = None
        if self.config.cross_level_layers:
            query_positions = torch.arange(past_seen, past_seen + input_ids.shape[1], device=input_ids.device)
            level_mask, has_key = self._level_mask(roles, attention_mask, cache, query_positions.expand_as(input_ids))
        output = self._run_layers(inputs_embeds, position_ids, causal_mask, level_mask, has_key, roles, cache, kwargs)
        return BaseModelOutputWithPast(last_hidden_state=output.last_hidden_state, cache=cache if use_cache else None)

    def _run_layers(self, hidden_states, position_ids, causal_mask, level_mask, has_key, roles, cache, kwargs):
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states, position_embeddings, causal_mask, level_mask, has_key, roles, cache, **kwargs
            )
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden_states), cache=cache)

    def beam_cache(self, prefill: Cache, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> GamerBeamCache:
        """Turn a prefill cache (prompt ending with the requested behavior token) into shared beam state."""
        cross_allowed = None
        if self.config.cross_level_layers:
            meta = prefill.layers[self._meta_cache_idx].keys  # [B, 2, T, 1]: key level, key position
            requested = self.level_table[GamerTokenRoles.from_input_ids(input_ids[:, -1:], self.config).behavior_ids]
            key_level = torch.where(attention_mask.bool(), meta[:, 0, :, 0], torch.full_like(meta[:, 0, :, 0], _PAD_KEY_LEVEL))
            cross_allowed = key_level < requested
        return GamerBeamCache(prefill, attention_mask, cross_allowed)


class GamerForCausalLM(GamerPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: GamerConfig) -> None:
        super().__init__(config)
        self.model = GamerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # A tied head is the embedding matrix: it is never saved, so reloading it is not "missing".
        self._keys_to_ignore_on_save = ["lm_head.weight"] if config.tie_word_embeddings else None
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        behavior_ids: torch.LongTensor | None = None,
        item_position_ids: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """`labels` are -100 except on code tokens; the loss divides logits by the training temperature."""
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            behavior_ids=behavior_ids,
            item_position_ids=item_position_ids,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:, :]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits.float() / self.config.training_temperature,
                labels=labels,
                vocab_size=self.config.vocab_size,
                num_items_in_batch=num_items_in_batch,
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache)

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **kwargs: Any) -> dict[str, Any]:
        """Derive token roles from the whole sequence so the fed-back tokens keep their behavior identity."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        roles = GamerTokenRoles.from_input_ids(input_ids, self.config)
        length = model_inputs["input_ids"].shape[1]
        model_inputs["behavior_ids"] = roles.behavior_ids[:, -length:]
        model_inputs["item_position_ids"] = roles.item_position_ids[:, -length:]
        return model_inputs

    @torch.no_grad()
    def recommend(
        self,
        tokenizer: Any,
        histories: Sequence[Sequence[tuple[str, str]]],
        behavior: str | Sequence[str] | None = None,
        top_k: int = 10,
        num_beams: int = 20,
        max_history: int | None = None,
        exclude_history: bool = False,
        batch_size: int = 64,
        on_unknown: str = "raise",
        exclude_items: Sequence[Collection[str]] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Top-K items per history under the requested behavior (default: the target behavior).

        Each history is encoded once (prefill); the cache is shared by the beams, and only the K
        code steps are decoded, constrained to real items. Scores are summed log-probabilities.
        `exclude_items` gives per history items never to return (with the history's own items when
        `exclude_history`); the beams search around them, so lists stay top_k long.
        """
        if exclude_items is not None and len(exclude_items) != len(histories):
            raise ValueError(f"got {len(exclude_items)} exclude_items lists for {len(histories)} histories")

        def decode(batch: dict[str, torch.Tensor], start: int) -> list[list[tuple[str, float]]]:
            chunk = histories[start : start + batch_size]
            exclude = None
            if exclude_history or exclude_items is not None:
                given = exclude_items[start : start + batch_size] if exclude_items is not None else [()] * len(chunk)
                exclude = [{str(item) for item in items} | ({str(item) for _, item in history} if exclude_history else set())
                           for history, items in zip(chunk, given)]
            return beam_search_items(self, tokenizer, batch["input_ids"], batch["attention_mask"], top_k, num_beams, exclude)

        return self._per_batch(tokenizer, histories, behavior, max_history, batch_size, on_unknown, decode)

    @torch.no_grad()
    def score_items(
        self,
        tokenizer: Any,
        histories: Sequence[Sequence[tuple[str, str]]],
        candidates: Sequence[Sequence[str]],
        behavior: str | Sequence[str] | None = None,
        max_history: int | None = None,
        batch_size: int = 64,
        on_unknown: str = "raise",
    ) -> list[list[float]]:
        """Log-probability of each candidate item per history, the score `recommend()` ranks by.

        For re-ranking given candidates (the user's own items, another retriever's list). Items not in
        the tokenizer's index raise, or score -inf with on_unknown="skip".
        """
        if len(candidates) != len(histories):
            raise ValueError(f"got {len(candidates)} candidate lists for {len(histories)} histories")
        known = tokenizer.item_index

        def score(batch: dict[str, torch.Tensor], start: int) -> list[list[float]]:
            chunk = [[str(item) for item in items] for items in candidates[start : start + batch_size]]
            unknown = [item for items in chunk for item in items if item not in known]
            if unknown and on_unknown == "raise":
                raise ValueError(f"candidate item {unknown[0]!r} is not in the tokenizer's item index "
                                 f"(pass on_unknown='skip' to score unknown items -inf)")
            width = max((len(items) for items in chunk), default=0)
            if width == 0:
                return [[] for _ in chunk]
            fallback = [0] * tokenizer.num_levels
            codes = torch.tensor([[list(known.get(item, fallback)) for item in items] + [fallback] * (width - len(items))
                                  for items in chunk], dtype=torch.long, device=self.device)
            scores = score_candidate_items(self, tokenizer, batch["input_ids"], batch["attention_mask"], codes).tolist()
            return [[s if item in known else float("-inf") for item, s in zip(items, row)]
                    for items, row in zip(chunk, scores)]

        return self._per_batch(tokenizer, histories, behavior, max_history, batch_size, on_unknown, score)

    def _per_batch(self, tokenizer: Any, histories: Sequence[Sequence[tuple[str, str]]],
                   behavior: str | Sequence[str] | None, max_history: int | None, batch_size: int, on_unknown: str,
                   run: Callable[[dict[str, torch.Tensor], int], list[Any]]) -> list[Any]:
        """Encode histories batch by batch with the requested behavior token and run `run(batch, start)` in eval mode."""
        behavior = tokenizer.target_behavior if behavior is None else behavior
        requested = [behavior] * len(histories) if isinstance(behavior, str) else list(behavior)
        if len(requested) != len(histories):
            raise ValueError(f"got {len(requested)} behaviors for {len(histories)} histories")
        was_training = self.training
        self.eval()
        results: list[Any] = []
        try:
            for start in range(0, len(histories), batch_size):
                batch = tokenizer.encode_histories(
                    histories[start : start + batch_size], behavior=requested[start : start + batch_size],
                    max_history=max_history, return_tensors="pt", on_unknown=on_unknown,
                ).to(self.device)
                results.extend(run(batch, start))
        finally:
            self.train(was_training)
        return results
