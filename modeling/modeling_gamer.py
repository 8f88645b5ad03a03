"""GAMER: a Qwen3-style decoder over behavior and semantic-ID tokens, with cross-level
interaction layers (higher intents read lower ones) and position-routed expert FFNs.

Every token's role is a function of its id (see `GamerConfig`), so behavior identities,
levels and expert routes are derived from `input_ids` in training, prefill and cached
decoding alike (the cache keeps each key's behavior identity, so a fed-back code token
inherits the behavior of the prompt it continues). With `inputs_embeds` the roles are given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.integrations.moe import _grouped_mm
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions, CausalLMOutputWithCrossAttentions
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import AttentionInterface, slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .cache_gamer import GamerCache, GamerCacheMixin, gamer_cache_like
from .configuration_gamer import GamerConfig, save_with_remote_code
from .generation_gamer import GamerGenerationMixin

__all__ = ["GamerPreTrainedModel", "GamerModel", "GamerForCausalLM"]


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


def _expert_mm(input: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Transformers' grouped matmul; on CPU, its per-expert loop where a row is not a multiple of 16 bytes: torch's
    CPU grouped kernel refuses such strides (an expert 37 floats wide, or 44 in bf16, would fail every forward)."""
    row_bytes = weight.element_size()
    if input.device.type == "cpu" and (input.shape[-1] * row_bytes % 16 or weight.shape[-1] * row_bytes % 16):
        return torch.ops.transformers.grouped_mm_fallback(input.to(weight.dtype), weight, offs=offsets)
    return _grouped_mm(input, weight, offsets)


class GamerExpertFFN(nn.Module):
    """Position-routed SwiGLU experts (0 pad, 1 behavior token, 2..K+1 code levels); no gate, no aux loss.

    Tokens are sorted by expert and each projection is one grouped matmul over the expert groups
    (Transformers' `grouped_mm` dispatch, as its MoE experts use it). Every shape is fixed by the
    number of tokens, not by how many go to each expert, so `torch.compile(fullgraph=True)` traces
    it. (Transformers' experts interface itself cannot host it: the behavior-injection layers feed
    the experts wider inputs than their outputs.) With `use_expert_ffn=False` it is one dense SwiGLU.
    """

    def __init__(self, config: GamerConfig, input_size: int) -> None:
        super().__init__()
        self.num_experts = config.num_code_levels + 2 if config.use_expert_ffn else 1
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(self.num_experts, input_size, 2 * config.intermediate_size))
        self.down_proj = nn.Parameter(torch.empty(self.num_experts, config.intermediate_size, config.hidden_size))
        self.act_fn = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.ffn_dropout)

    def _swiglu(self, gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        return self.dropout(self.act_fn(gate) * up)

    @staticmethod
    def _single_route(routes: torch.Tensor) -> int | None:
        """The expert of every row where all rows share one, on CPU outside compile (where reading it costs no
        device sync and no graph break), else None."""
        if (routes.device.type != "cpu" or routes.numel() == 0 or torch.compiler.is_compiling()
                or torch.is_autocast_enabled("cpu")):
            return None
        first = int(routes.flatten()[0])
        return first if bool((routes == first).all()) else None

    def forward(self, hidden_states: torch.Tensor, item_position_ids: torch.Tensor) -> torch.Tensor:
        if self.num_experts == 1:
            return self._swiglu(hidden_states @ self.gate_up_proj[0]) @ self.down_proj[0]
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        routes = item_position_ids.reshape(-1)
        route = self._single_route(routes)
        if route is not None:  # one expert for every row (a decode step of codes of one level): its plain matmuls
            return (self._swiglu(flat @ self.gate_up_proj[route]) @ self.down_proj[route]).view(
                *hidden_states.shape[:-1], -1)
        order = torch.argsort(routes, stable=True)
        experts = torch.arange(self.num_experts, device=routes.device)
        offsets = (routes[:, None] == experts).sum(0).cumsum(0).to(torch.int32)  # end of each expert's group
        gate_up_proj, down_proj = self.gate_up_proj, self.down_proj
        if torch.is_autocast_enabled(flat.device.type):  # grouped_mm is not autocast-aware: cast as a matmul would
            dtype = torch.get_autocast_dtype(flat.device.type)
            gate_up_proj, down_proj = gate_up_proj.to(dtype), down_proj.to(dtype)
        grouped = _expert_mm(self._swiglu(_expert_mm(flat[order], gate_up_proj, offsets)), down_proj, offsets)
        out = torch.empty_like(grouped)  # in the compute dtype (bf16 under autocast)
        out[order] = grouped
        return out.view(*hidden_states.shape[:-1], -1)


class GamerRotaryEmbedding(nn.Module):
    """RoPE through Transformers' initialisers, so `rope_parameters` (linear, dynamic, yarn, ...) apply."""

    def __init__(self, config: GamerConfig) -> None:
        super().__init__()
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings
        self.config = config
        self.rope_type = config.rope_parameters["rope_type"]
        rope_init_fn: Callable = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: GamerConfig, **kwargs: Any) -> tuple[torch.Tensor, float]:
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), 1.0

    @torch.no_grad()
    @dynamic_rope_update  # dynamic RoPE types recompute their frequencies past the trained length
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 1):
    """`k` None: the queries alone (a beam step's cross-level layers, whose own keys no query reads)."""
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), None if k is None else (k * cos) + (rotate_half(k) * sin)


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


def sdpa_grouped_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
):
    """SDPA on the grouped K/V heads as stored (`enable_gqa`), for masked inference on CPU.

    Transformers' sdpa path copies the K/V heads per query head whenever a mask is given (on CUDA a mask
    with grouped heads falls back to the math kernel); torch's CPU kernel takes both as they are, with the
    same result, so the beam decode and the cross-level layers skip that copy.
    """
    attn_output = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        enable_gqa=module.num_key_value_groups > 1,
    )
    return attn_output.transpose(1, 2).contiguous(), None


QUERY_BLOCK = 128  # query rows per call of `query_blocked_attention`


def _runs_unfused(query: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float, is_causal: bool) -> bool:
    """True where sdpa can only take torch's math path over the whole [Q x K] map: attention dropout on CPU
    (no fused CPU kernel takes dropout), with a boolean or causal mask and more than one block of queries."""
    if dropout == 0 or query.device.type != "cpu" or query.shape[2] <= QUERY_BLOCK:
        return False
    masked = attention_mask.dtype == torch.bool if attention_mask is not None else is_causal
    return masked and not torch.compiler.is_compiling()


def query_blocked_attention(
    attention_interface: Callable,
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """`attention_interface` over blocks of `QUERY_BLOCK` query rows, each given only the key range its mask rows
    can read (a causal block: the keys up to its last query): the output of one call, for about half the work of
    a causal [Q x K] map, in pieces small enough to stay in cache. Why: torch's math path (sdpa with dropout on
    CPU) computes, drops out and keeps for backward every element of the map, the masked half included.

    `attention_mask` is boolean ([batch, 1 or heads, Q, K]), or None for causal attention whose queries are the
    last Q keys. Attention weights are not returned (sdpa has none).
    """
    num_queries, num_keys = query.shape[2], key.shape[2]
    key_index = torch.arange(num_keys, device=query.device)
    outputs = []
    for start in range(0, num_queries, QUERY_BLOCK):
        end = min(start + QUERY_BLOCK, num_queries)
        if attention_mask is None:
            first, last = 0, num_keys - num_queries + end
            query_index = torch.arange(start, end, device=query.device) + num_keys - num_queries
            mask = key_index[None, None, None, :last] <= query_index[None, None, :, None]
        else:
            rows = attention_mask[:, :, start:end]
            readable = rows.flatten(0, 2).any(0).nonzero()  # keys some query of the block may read
            first, last = (int(readable[0]), int(readable[-1]) + 1) if len(readable) else (0, 1)
            mask = rows[..., first:last]
        block, _ = attention_interface(module, query[:, :, start:end], key[:, :, first:last],
                                       value[:, :, first:last], mask, **kwargs)
        outputs.append(block)
    return torch.cat(outputs, dim=1), None


def _sdpa_call(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """One SDPA call: on the grouped heads in place for masked inference on CPU, else Transformers' sdpa path."""
    if attention_mask is not None and query.device.type == "cpu" and not torch.is_grad_enabled():
        return sdpa_grouped_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def gamer_sdpa_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """GAMER's `sdpa` entry: Transformers' sdpa with the two CPU choices its path does not make.

    - attention dropout on CPU (torch's math path over the whole map): blocks of queries
      (`query_blocked_attention`), each over the keys its mask can read;
    - masked inference on CPU (the beam decode, the cross-level layers): the grouped K/V heads in place
      (`sdpa_grouped_attention_forward`).
    Anything else (CUDA, no mask with grad, compiled) is Transformers' `sdpa_attention_forward` as is.
    """
    if _runs_unfused(query, attention_mask, dropout, module.is_causal):
        return query_blocked_attention(_sdpa_call, module, query, key, value, attention_mask, dropout=dropout,
                                       scaling=scaling, **kwargs)
    return _sdpa_call(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


# The model's own attention table, as Transformers has a model override a registered function locally (Doge does
# so): `sdpa` is GAMER's entry; every other name (eager, flex_attention, flash, kernels a user registers) is the
# global one, and Transformers' own `sdpa` stays as it is for every other model.
ALL_ATTENTION_FUNCTIONS = AttentionInterface()
ALL_ATTENTION_FUNCTIONS["sdpa"] = gamer_sdpa_attention_forward


def _last_row(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The last query row of a [batch, heads, Q, K] mask (None stays None: one query reads every key)."""
    return None if mask is None else mask[..., -1:, :]


class GamerTokenRoles:
    """Per-token ids derived from the vocabulary layout.

    - `item_position_ids`: 0 pad/special, 1 behavior token, 2..K+1 code level 1..K (expert route);
    - `behavior_ids`: identity (1..B) of the interaction a token belongs to, 0 for pads.
    """

    def __init__(self, item_position_ids: torch.Tensor, behavior_ids: torch.Tensor) -> None:
        self.item_position_ids = item_position_ids
        self.behavior_ids = behavior_ids

    @classmethod
    def from_input_ids(
        cls, input_ids: torch.Tensor, config: GamerConfig, previous_behavior_ids: torch.Tensor | None = None
    ) -> "GamerTokenRoles":
        """`previous_behavior_ids` ([batch]): the identity code tokens before the chunk's first behavior token
        continue (the last cached token's, when decoding); 0 when the chunk starts a sequence."""
        layout = config.layout
        is_behavior = layout.is_behavior_token(input_ids)
        item_position = layout.item_positions(input_ids)
        own_identity = layout.behavior_identity(input_ids)
        # A code token belongs to the nearest behavior token before it (cummax over its position).
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
        last_behavior = torch.where(is_behavior, positions, torch.full_like(positions, -1)).cummax(dim=-1).values
        inherited = own_identity.gather(-1, last_behavior.clamp(min=0))
        before = torch.zeros_like(inherited) if previous_behavior_ids is None else previous_behavior_ids[:, None].expand_as(inherited)
        inherited = torch.where(last_behavior >= 0, inherited, before)
        behavior_ids = torch.where(item_position >= 2, inherited, own_identity)
        return cls(item_position, behavior_ids)


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
        additive: tuple[torch.Tensor, ...] | None = None,
        queries_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Query, key and value heads after q/k-norm and RoPE; `queries_only`: key and value are None (not computed).

        `additive`: behavior embeddings for q, k and v (q alone with `queries_only`), added before q/k-norm and RoPE.
        """
        hidden_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape)
        key = value = None
        if not queries_only:
            key = self.k_proj(hidden_states).view(hidden_shape)
            value = self.v_proj(hidden_states).view(hidden_shape)
        if additive is not None:
            query = query + additive[0]
            if key is not None:
                key, value = key + additive[1], value + additive[2]
        query = self.q_norm(query).transpose(1, 2)
        if key is not None:
            key = self.k_norm(key).transpose(1, 2)
            value = value.transpose(1, 2)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        return query, key, value

    def attend(
        self, query, key, value, attention_mask, cache: Cache | None, cache_idx: int, cross_level: bool, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention through the configured interface; output before o_proj."""
        if cache is not None:
            update = cache.update_cross_level if cross_level else cache.update
            key, value = update(key, value, cache_idx)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*attn_output.shape[:2], -1).contiguous()
        return attn_output, attn_weights

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
        cache: Cache | None = None,
        last_only: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query, key, value = self.project(hidden_states, position_embeddings)
        if last_only:  # every position's keys and values, the last position's query alone
            query, attention_mask = query[:, :, -1:], _last_row(attention_mask)
        attn_output, attn_weights = self.attend(
            query, key, value, attention_mask, cache, self.layer_idx, cross_level=False, **kwargs
        )
        return self.o_proj(attn_output), attn_weights


class GamerCrossLevelAttention(GamerAttention):
    """Cross-level interaction: token i reads token j only if j <= i and level(j) < level(i).

    Behavior embeddings (per head) are added to q, k and v; the output is gated by SiLU(gate_proj(x)).
    Rows with no readable key (lowest-level tokens, pads) contribute exactly zero.
    """

    def __init__(self, config: GamerConfig, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.cross_level_idx = sorted(config.cross_level_layers).index(layer_idx)  # its part of the cache
        self.is_causal = False
        num_ids = config.num_behaviors + 1
        self.behavior_q = nn.Embedding(num_ids, config.num_attention_heads * self.head_dim)
        self.behavior_k = nn.Embedding(num_ids, config.num_key_value_heads * self.head_dim)
        self.behavior_v = nn.Embedding(num_ids, config.num_key_value_heads * self.head_dim)
        self.gate_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        level_mask: torch.Tensor | None,
        has_key: torch.Tensor,
        behavior_ids: torch.Tensor,
        cache: Cache | None = None,
        last_only: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # A beam step's queries read prompt keys its cache gathered once; no query reads the step's own keys
        gathered = cache.gathered_cross_level(self.cross_level_idx) if cache is not None else None
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        embeddings = (self.behavior_q,) if gathered is not None else (self.behavior_q, self.behavior_k, self.behavior_v)
        additive = tuple(embedding(behavior_ids).view(shape) for embedding in embeddings)
        query, key, value = self.project(hidden_states, position_embeddings, additive, queries_only=gathered is not None)
        if gathered is not None:
            (key, value), cache = gathered, None
        if last_only:
            query, level_mask, has_key = query[:, :, -1:], _last_row(level_mask), has_key[:, -1:]
            hidden_states = hidden_states[:, -1:]
        attn_output, attn_weights = self.attend(
            query, key, value, level_mask, cache, self.cross_level_idx, cross_level=True, **kwargs
        )
        gate = F.silu(self.gate_proj(hidden_states)) * has_key.unsqueeze(-1).to(hidden_states.dtype)
        return self.o_proj(attn_output) * gate, attn_weights


class GamerDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: GamerConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = GamerAttention(config, layer_idx)
        self.input_layernorm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.cross_attn = None
        if layer_idx in config.cross_level_layers:
            self.cross_attn = GamerCrossLevelAttention(config, layer_idx)
            self.cross_attn_layernorm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.behavior_embedding = None
        ffn_input = config.hidden_size
        if layer_idx in config.behavior_injection_layers:
            self.behavior_embedding = nn.Embedding(config.num_behaviors + 1, config.behavior_embedding_dim)
            ffn_input += config.behavior_embedding_dim
        self.mlp = GamerExpertFFN(config, ffn_input)
        self.post_attention_layernorm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        roles: GamerTokenRoles,
        attention_mask: torch.Tensor | None = None,
        level_mask: torch.Tensor | None = None,
        has_key: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = False,
        last_only: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """`last_only`: the output at the last position only (the attention whose output feeds nothing else, the
        cross-level one where this layer has it, runs its last query alone; every key still goes to the cache)."""
        self_last = last_only and self.cross_attn is None
        residual, _ = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask, cache, last_only=self_last,
            **kwargs,
        )
        hidden_states = (hidden_states[:, -1:] if self_last else hidden_states) + self.dropout(residual)
        if self.cross_attn is not None:
            residual, _ = self.cross_attn(
                self.cross_attn_layernorm(hidden_states), position_embeddings, level_mask, has_key,
                roles.behavior_ids, cache, last_only=last_only, **kwargs,
            )
            hidden_states = (hidden_states[:, -1:] if last_only else hidden_states) + self.dropout(residual)
        if last_only:
            roles = GamerTokenRoles(roles.item_position_ids[:, -1:], roles.behavior_ids[:, -1:])
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
    supports_gradient_checkpointing = True
    _no_split_modules = ["GamerDecoderLayer"]
    _supports_sdpa = True
    # Flash attention takes causal (and varlen packed) masks only: GAMER's self-attention, not the cross-level rule.
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = False
    _can_compile_fullgraph = True
    # `cross_attentions` are the cross-level layers' weights (one entry per cross-level layer), returned with
    # `output_attentions` as Transformers does for encoder-decoder cross-attention.
    _can_record_outputs = {
        "hidden_states": GamerDecoderLayer,
        "attentions": OutputRecorder(GamerAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(GamerCrossLevelAttention, index=1, layer_name="cross_attn"),
    }

    def _check_and_adjust_attn_implementation(self, attn_implementation: str | None, *args: Any, **kwargs: Any) -> str:
        """Refuse flash attention up front where the model has cross-level layers: their mask (a key of strictly
        lower level, per token) is no causal or sliding-window pattern a flash kernel can take."""
        if (attn_implementation or "").startswith("flash_attention") and self.config.cross_level_layers:
            raise ValueError(
                f"attn_implementation={attn_implementation!r} cannot run GAMER's cross-level layers "
                f"(cross_level_layers={self.config.cross_level_layers}): flash kernels take causal masks only, not "
                "the rule 'read earlier tokens of strictly lower level'. Use 'sdpa' or 'flex_attention', or a config "
                "with cross_level_layers=[]"
            )
        return super()._check_and_adjust_attn_implementation(attn_implementation, *args, **kwargs)

    def save_pretrained(self, save_directory, *args: Any, **kwargs: Any) -> None:
        """Save as usual, plus the remote-code files and a complete `auto_map` (pushed with them too)."""
        save_with_remote_code(self, super().save_pretrained, save_directory, "config.json", args, kwargs)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Refused unless the size stays: GAMER's vocabulary is its layout, not a list that can grow.

        Every id's role (special, behavior, code level) follows from the behavior table and codebook sizes,
        so extra rows would be tokens no layer can route and a checkpoint no config can describe.
        """
        size = self.config.vocab_size if new_num_tokens is None else new_num_tokens
        if pad_to_multiple_of is not None:
            size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
        if size != self.config.vocab_size:
            raise ValueError(
                f"cannot resize GAMER's embeddings to {size}: the vocabulary is fixed by its layout "
                f"({self.config.layout.describe()}); to add behaviors or codes, build a new tokenizer and a "
                "config from it (GamerConfig.from_preset(..., tokenizer=...))"
            )
        return self.get_input_embeddings()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, GamerExpertFFN):
            init.normal_(module.gate_up_proj, mean=0.0, std=std)
            init.normal_(module.down_proj, mean=0.0, std=std)
        elif isinstance(module, GamerRMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, GamerModel):
            init.copy_(module.level_table, self.config.layout.level_table())


class GamerModel(GamerPreTrainedModel):
    def __init__(self, config: GamerConfig) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([GamerDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = GamerRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = GamerRotaryEmbedding(config)
        self.level_table = nn.Buffer(config.layout.level_table(), persistent=False)
        self.gradient_checkpointing = False
        self.post_init()

    def _level_mask(
        self,
        query_behavior_ids: torch.Tensor,
        key_behavior_ids: torch.Tensor,
        past_seen: int | torch.Tensor = 0,
        sequence_ids: torch.Tensor | None = None,
        custom_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean [B, 1, Q, KV] mask of the cross-level layers and [B, Q] 'has any key' flags.

        Query q sits at key index `past_seen + q` (a static cache has room past it). Key j is read by query i iff j <= i, j is a real token (identity > 0),
        level(j) < level(i) and, for packed rows, both belong to the same sequence; a caller's 4D mask
        (boolean, or additive with 0 where allowed) narrows it further.
        """
        num_queries, num_keys = query_behavior_ids.shape[-1], key_behavior_ids.shape[-1]
        query_index = torch.arange(num_queries, device=key_behavior_ids.device) + past_seen
        key_index = torch.arange(num_keys, device=key_behavior_ids.device)
        query_level = self.level_table[query_behavior_ids]
        key_level = self.level_table[key_behavior_ids]
        allowed = (key_index[None, None, :] <= query_index[None, :, None]) & (key_behavior_ids > 0)[:, None, :]
        allowed = allowed & (key_level[:, None, :] < query_level[:, :, None])
        if sequence_ids is not None:
            allowed = allowed & (sequence_ids[:, None, :] == sequence_ids[:, :, None])
        if custom_mask is not None:
            allowed = allowed & (custom_mask if custom_mask.dtype == torch.bool else custom_mask == 0).any(1)
        has_key = allowed.any(-1)
        # A row with no key would be NaN in softmax: let it read its own position, then zero it by `has_key`.
        own = key_index[None, None, :] == query_index[None, :, None]
        allowed = allowed | (own & ~has_key[..., None])
        return allowed[:, None], has_key

    def _level_block_mask(
        self,
        query_behavior_ids: torch.Tensor,
        key_behavior_ids: torch.Tensor,
        past_seen: int | torch.Tensor,
        sequence_ids: torch.Tensor | None,
        custom_mask: torch.Tensor | None,
        has_key: torch.Tensor,
    ) -> BlockMask:
        """The cross-level rule of `_level_mask` as a flex-attention `BlockMask`: the same rule written as a
        `mask_mod` over the tokens' levels, so blocks with no readable key are skipped by the kernel."""
        query_level = self.level_table[query_behavior_ids]
        key_level = self.level_table[key_behavior_ids]
        key_real = key_behavior_ids > 0
        custom = None
        if custom_mask is not None:
            custom = (custom_mask if custom_mask.dtype == torch.bool else custom_mask == 0).any(1)

        def cross_level(batch_idx, head_idx, q_idx, kv_idx):
            position = q_idx + past_seen
            allowed = (kv_idx <= position) & key_real[batch_idx, kv_idx]
            allowed = allowed & (key_level[batch_idx, kv_idx] < query_level[batch_idx, q_idx])
            if sequence_ids is not None:
                allowed = allowed & (sequence_ids[batch_idx, kv_idx] == sequence_ids[batch_idx, q_idx])
            if custom is not None:
                allowed = allowed & custom[batch_idx, q_idx, kv_idx]
            return allowed | ((kv_idx == position) & ~has_key[batch_idx, q_idx])

        batch, num_queries = query_behavior_ids.shape
        return create_block_mask(cross_level, batch, None, num_queries, key_behavior_ids.shape[-1],
                                 device=key_behavior_ids.device)

    def _roles(self, input_ids, behavior_ids, item_position_ids, cache) -> GamerTokenRoles:
        if behavior_ids is not None and item_position_ids is not None:
            return GamerTokenRoles(item_position_ids, behavior_ids)
        if input_ids is None:
            raise ValueError(
                "inputs_embeds needs behavior_ids and item_position_ids: GAMER derives each token's behavior identity "
                "and expert route from input_ids, which are not given (see GamerTokenRoles.from_input_ids)"
            )
        previous = cache.last_behavior_ids() if isinstance(cache, GamerCacheMixin) else None
        return GamerTokenRoles.from_input_ids(input_ids, self.config, previous)

    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
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
        last_position_only: bool = False,
        **kwargs: Any,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        behavior_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Identity (1..B) of the interaction each token belongs to, 0 for pads. Derived from `input_ids` (and the
            cache) when not given; required with `inputs_embeds`.
        item_position_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Expert route of each token: 0 pad, 1 behavior token, 2..K+1 code level. Same rule as `behavior_ids`.
        last_position_only (`bool`, *optional*, defaults to `False`):
            Run the last layer's output rows at the last position only (`last_hidden_state` is then
            `(batch_size, 1, hidden_size)`); every position's keys and values still go to the cache. What a prefill
            needs for its next-token logits (`GamerForCausalLM` sets it for `logits_to_keep=1`): the last layer's
            attention over all queries, its output projection and experts run for one row per sequence. Ignored
            where hidden states or attentions are recorded, and with flex attention (a block mask has no row view).
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        # Packed rows (position_ids restarting per sequence, no mask, no cache: as create_causal_mask reads them).
        packed = position_ids is not None and attention_mask is None and cache is None
        # Unlike `merge_with_config_defaults`, a training forward or a packed batch builds no cache unless asked
        # (nothing reads it, and no decoding continues packed rows).
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training and not packed
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache = False
        roles = self._roles(input_ids, behavior_ids, item_position_ids, cache)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            cache = GamerCache(config=self.config)
        if cache is not None and not isinstance(cache, GamerCacheMixin):
            raise TypeError(f"GAMER needs a GamerCache (self-attention, cross-level and role parts), got "
                            f"{type(cache).__name__}: pass GamerCache(config=model.config) or let the model create it")
        past_seen = cache.get_seq_length() if cache is not None else 0
        length = inputs_embeds.shape[1]
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
            else:
                position_ids = torch.arange(past_seen, past_seen + length, device=inputs_embeds.device)[None]
        position_ids = position_ids.expand(inputs_embeds.shape[0], -1)
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=None if packed else cache,
            position_ids=position_ids,
        )
        token_behavior = roles.behavior_ids
        if attention_mask is not None and attention_mask.dim() == 2:  # masked tokens are never read
            token_behavior = token_behavior.masked_fill(attention_mask[:, -length:] == 0, 0)
        key_behavior = token_behavior
        if cache is not None:  # every key's identity: cross-level reads it, fed-back codes inherit the last one
            key_behavior = cache.update_roles(token_behavior)
        level_mask = has_key = None
        flex = self.config._attn_implementation == "flex_attention"
        kept = None
        if cache is not None and self.config.cross_level_layers:
            kept = cache.cross_level_mask(token_behavior, as_block_mask=flex)
        if kept is not None:  # the cache keeps only the cross-level keys this step reads, and gives their rule
            level_mask, has_key = kept
        elif self.config.cross_level_layers:
            # Packed rows (position_ids restarting at 0, no mask): a new sequence starts at every position 0.
            sequence_ids = (position_ids == 0).cumsum(-1) if packed else None
            custom = attention_mask if attention_mask is not None and attention_mask.dim() == 4 else None
            level_mask, has_key = self._level_mask(token_behavior, key_behavior, past_seen, sequence_ids, custom)
            if flex:
                level_mask = self._level_block_mask(token_behavior, key_behavior, past_seen, sequence_ids, custom,
                                                    has_key)
        last_only = last_position_only and length > 1 and not self._records_outputs(kwargs)
        return self._run_layers(inputs_embeds, position_ids, causal_mask, level_mask, has_key, roles, cache, kwargs,
                                return_cache=use_cache, last_only=last_only)

    def _records_outputs(self, kwargs: dict[str, Any]) -> bool:
        """Whether this forward records per-layer outputs, or runs flex attention (no row view of a block mask)."""
        return (self.config._attn_implementation == "flex_attention"
                or kwargs.get("output_hidden_states", self.config.output_hidden_states)
                or kwargs.get("output_attentions", self.config.output_attentions))

    def _run_layers(self, hidden_states, position_ids, causal_mask, level_mask, has_key, roles, cache, kwargs,
                    return_cache: bool = True, last_only: bool = False) -> BaseModelOutputWithPastAndCrossAttentions:
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        layers = self.layers[: self.config.num_hidden_layers]
        for index, decoder_layer in enumerate(layers):
            hidden_states = decoder_layer(
                hidden_states,
                roles,
                attention_mask=causal_mask,
                level_mask=level_mask,
                has_key=has_key,
                position_embeddings=position_embeddings,
                cache=cache,
                last_only=last_only and index == len(layers) - 1,
                **kwargs,
            )
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=self.norm(hidden_states), cache=cache if return_cache else None
        )


def _labelled_rows(
    hidden_states: torch.Tensor, labels: torch.Tensor | None, shift_labels: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states of the positions that predict a label, and those labels: all the causal-LM loss reads
    (`ForCausalLMLoss` ignores the rest), so the head need not score every position."""
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=-100)[..., 1:]
    shift_labels = shift_labels.to(hidden_states.device)
    scored = shift_labels != -100
    return hidden_states[scored], shift_labels[scored]


class GamerForCausalLM(GamerPreTrainedModel, GamerGenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: GamerConfig) -> None:
        super().__init__(config)
        self.model = GamerModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # A tied head is the embedding matrix: it is never saved, so reloading it is not "missing".
        self._keys_to_ignore_on_save = ["lm_head.weight"] if config.tie_word_embeddings else None
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
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
        skip_logits: bool = False,
        **kwargs: Any,
    ) -> CausalLMOutputWithCrossAttentions:
        r"""
        labels (`torch.LongTensor`, *optional*): -100 except on code tokens. The loss divides logits by
            `config.training_temperature`; `shift_labels` (already shifted, as packed or context-parallel batches
            carry them) are used as given.
        skip_logits (`bool`, *optional*, defaults to `False`): return the loss only (`logits` is `None`): the
            head then runs on the labelled positions alone, so no [batch, length, vocab] tensor is made (the
            Trainer's loss-only evaluation, whose target items are a few positions of long prompts). The loss
            is the same, to float rounding.
        """
        if skip_logits and labels is None and kwargs.get("shift_labels") is None:
            raise ValueError("skip_logits=True returns only the loss: pass labels (or shift_labels)")
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            behavior_ids=behavior_ids,
            item_position_ids=item_position_ids,
            last_position_only=isinstance(logits_to_keep, int) and logits_to_keep == 1,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = None if skip_logits else self.lm_head(hidden_states)
        loss = None
        if labels is not None or kwargs.get("shift_labels") is not None:
            scores = logits
            if scores is None:
                rows, kwargs["shift_labels"] = _labelled_rows(hidden_states, labels, kwargs.get("shift_labels"))
                scores, labels = self.lm_head(rows), None
            loss = self.loss_function(
                logits=scores.float() / self.config.training_temperature,
                labels=labels,
                vocab_size=self.config.vocab_size,
                **kwargs,
            )
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args: Any, **kwargs: Any) -> None:
        """The cache generate() makes (dynamic, static, ...) becomes the GAMER cache of the same kind."""
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        if model_kwargs.get("cache") is not None:
            model_kwargs["cache"] = gamer_cache_like(model_kwargs["cache"], self.config)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        inputs_embeds: torch.Tensor | None = None,
        behavior_ids: torch.LongTensor | None = None,
        item_position_ids: torch.LongTensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Roles given for an `inputs_embeds` prompt are used in its prefill only; later tokens derive theirs
        from their ids and the cache."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, inputs_embeds=inputs_embeds, **kwargs)
        if model_inputs.get("inputs_embeds") is not None:
            model_inputs["behavior_ids"], model_inputs["item_position_ids"] = behavior_ids, item_position_ids
        return model_inputs
