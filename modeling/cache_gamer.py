"""Decoding state of a GAMER model as Transformers caches.

`cache.layers` holds exactly the self-attention layers (one per decoder layer), so sequence length,
mask sizes and compilability read as for any decoder. Two named parts sit beside them:

- `cross_level_layers`: keys and values of the cross-level interaction layers, one per such layer;
- `roles`: the behavior identity of every cached token (0 for pads), which the cross-level rule
  reads for each key and which a fed-back code token inherits from the last cached one.

Both are layers of the same kind as the self-attention ones (dynamic or static), so beam reordering,
cropping (assisted decoding) and batch expansion move all three together. `GamerBeamCache` is the
shared-prompt state `recommend()` decodes its beams on, made from a filled GAMER cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache, DynamicLayer, StaticCache, StaticLayer

__all__ = ["GamerBeamCache", "GamerCache", "GamerCacheMixin", "GamerStaticCache", "gamer_cache_like"]


class GamerCacheMixin:
    """The cross-level and role parts shared by the dynamic and the static GAMER cache."""

    layers: list[CacheLayerMixin]
    cross_level_layers: list[CacheLayerMixin]
    roles: CacheLayerMixin

    def _init_parts(self, config: PreTrainedConfig, make_layer: Callable[[], CacheLayerMixin]) -> None:
        self.cross_level_layers = [make_layer() for _ in config.cross_level_layers]
        self.roles = make_layer()

    @property
    def _parts(self) -> list[CacheLayerMixin]:
        return [*self.cross_level_layers, self.roles]

    def update_cross_level(self, key_states: torch.Tensor, value_states: torch.Tensor, index: int):
        """Append the keys/values of the `index`-th cross-level layer; all of them, as for `update`."""
        return self.cross_level_layers[index].update(key_states, value_states)

    def update_roles(self, behavior_ids: torch.Tensor) -> torch.Tensor:
        """Append the behavior identities [batch, new] of the fed tokens; returns those of every cached key."""
        keys, _ = self.roles.update(behavior_ids[:, None, :, None], behavior_ids[:, None, :, None])
        return keys[:, 0, :, 0]

    def last_behavior_ids(self) -> torch.Tensor | None:
        """[batch] identity of the last cached token, or None while the cache is empty."""
        if not self.roles.is_initialized:
            return None
        return self.roles.keys[:, 0, self.roles.get_seq_length() - 1, 0]

    def reset(self) -> None:
        super().reset()
        for layer in self._parts:
            layer.reset()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        for layer in self._parts:
            layer.reorder_cache(beam_idx)

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        for layer in self._parts:
            layer.crop(tokens_to_remove)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        for layer in self._parts:
            layer.batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        for layer in self._parts:
            layer.batch_select_indices(indices)


class GamerCache(GamerCacheMixin, DynamicCache):
    """Dynamic GAMER cache (the default of `forward(use_cache=True)` and of `generate()`)."""

    def __init__(self, config: PreTrainedConfig, **kwargs) -> None:
        super().__init__(config=config, **kwargs)
        self._init_parts(config, DynamicLayer)


class GamerStaticCache(GamerCacheMixin, StaticCache):
    """Static GAMER cache for `cache_implementation="static"` and compiled decoding."""

    def __init__(self, config: PreTrainedConfig, max_cache_len: int, **kwargs) -> None:
        super().__init__(config=config, max_cache_len=max_cache_len, **kwargs)
        self._init_parts(config, lambda: StaticLayer(max_cache_len=max_cache_len))


def gamer_cache_like(cache: Cache, config: PreTrainedConfig) -> GamerCacheMixin:
    """The GAMER cache of the same kind as a fresh cache `generate()` made for a plain decoder."""
    if isinstance(cache, GamerCacheMixin):
        return cache
    if cache.get_seq_length() > 0:
        raise TypeError(f"a filled {type(cache).__name__} has no cross-level keys or token roles; "
                        "decode GAMER with a GamerCache")
    if isinstance(cache, StaticCache):
        return GamerStaticCache(config, max_cache_len=cache.get_max_length())
    if type(cache) is DynamicCache:
        return GamerCache(config)
    raise TypeError(f"GAMER decodes with GamerCache or GamerStaticCache, not {type(cache).__name__}")


class GamerBeamCache:
    """Decoding state for beams that share one prompt (used by `recommend()`), made from a prefill cache.

    The prompt's keys and values stay `[batch, ...]` and are never copied per beam; each beam keeps
    only the few code tokens it generated. A prompt's beams are folded into the query rows of one
    attention call (through the model's attention interface) over the prompt and all beams' tokens,
    masked so each beam reads the prompt and its own tokens: the same result as a per-beam copy.
    """

    def __init__(self, prefill: GamerCacheMixin, attention_mask: torch.Tensor, cross_allowed: torch.Tensor | None) -> None:
        self.prefix = [(layer.keys, layer.values) for layer in prefill.layers]
        self.cross_prefix = [(layer.keys, layer.values) for layer in prefill.cross_level_layers]
        self.prefix_valid = attention_mask.bool()  # [B, T] keys of the prompt that self-attention reads
        self.cross_allowed = cross_allowed  # [B, T] prompt keys of strictly lower level than the request
        self.suffix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.beams = 1

    @classmethod
    def from_prefill(cls, prefill: GamerCacheMixin, attention_mask: torch.Tensor, requested_level: torch.Tensor | None,
                     level_table: torch.Tensor) -> "GamerBeamCache":
        """`requested_level` [batch]: level of the behavior each prompt asks for (None without cross-level layers);
        the cross-level layers of a generated code read the prompt keys of strictly lower level."""
        cross_allowed = None
        if requested_level is not None:
            key_behavior = prefill.roles.keys[:, 0, :, 0]
            cross_allowed = (key_behavior > 0) & (level_table.to(key_behavior.device)[key_behavior] < requested_level[:, None])
        return cls(prefill, attention_mask, cross_allowed)

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

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, index: int, cross_level: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys, values and boolean mask for the fed tokens' queries folded as `fold` does.

        `key_states`/`value_states`: [batch * beams, kv_heads, 1, dim] of one fed token per beam. The keys
        are the shared prompt followed by every beam's generated tokens ([batch, kv_heads, T + beams * s,
        dim]); the mask [batch, 1, beams, keys] lets a beam read the prompt's real keys and its own tokens.
        Cross-level layers read only the prompt (generated codes share the requested level).
        """
        batch, beams = self.batch_size, self.beams
        if cross_level:
            keys, values = self.cross_prefix[index]
            allowed = self.cross_allowed[:, None, :].expand(batch, beams, -1)
            # A beam with nothing to read gets one key, so softmax stays finite; the layer's gate zeroes it.
            first = torch.arange(allowed.shape[-1], device=allowed.device) == 0
            return keys, values, (allowed | (first & ~allowed.any(-1, keepdim=True)))[:, None]
        if index in self.suffix:
            key_states = torch.cat([self.suffix[index][0], key_states], dim=-2)
            value_states = torch.cat([self.suffix[index][1], value_states], dim=-2)
        self.suffix[index] = (key_states, value_states)
        prefix_k, prefix_v = self.prefix[index]
        generated = key_states.shape[-2]

        def per_prompt(states: torch.Tensor) -> torch.Tensor:  # [B*beams, kv, s, d] -> [B, kv, beams*s, d]
            kv_heads, dim = states.shape[1], states.shape[-1]
            return states.view(batch, beams, kv_heads, generated, dim).transpose(1, 2).reshape(batch, kv_heads, -1, dim)

        keys = torch.cat([prefix_k, per_prompt(key_states)], dim=-2)
        values = torch.cat([prefix_v, per_prompt(value_states)], dim=-2)
        own = torch.eye(beams, dtype=torch.bool, device=keys.device).repeat_interleave(generated, dim=1)
        allowed = torch.cat([self.prefix_valid[:, None, :].expand(batch, beams, -1), own.expand(batch, -1, -1)], -1)
        return keys, values, allowed[:, None]

    def fold(self, query: torch.Tensor) -> torch.Tensor:
        """[batch * beams, heads, 1, dim] -> [batch, heads, beams, dim]: a prompt's beams are its query rows."""
        heads, dim = query.shape[1], query.shape[-1]
        return query.view(self.batch_size, self.beams, heads, dim).transpose(1, 2)

    def unfold(self, attn_output: torch.Tensor) -> torch.Tensor:
        """Attention output [batch, beams, heads * dim] -> [batch * beams, 1, heads * dim]."""
        return attn_output.reshape(self.batch_size * self.beams, 1, -1)
