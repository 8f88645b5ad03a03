"""Decoding state of a GAMER model as Transformers caches.

`cache.layers` holds exactly the self-attention layers (one per decoder layer), so sequence length,
mask sizes and compilability read as for any decoder. Two named parts sit beside them:

- `cross_level_layers`: keys and values of the cross-level interaction layers, one per such layer;
- `roles`: the behavior identity of every cached token (0 for pads), which the cross-level rule
  reads for each key and which a fed-back code token inherits from the last cached one.

Both are layers of the same kind as the self-attention ones (dynamic or static), so beam reordering,
cropping (assisted decoding) and batch expansion move all three together.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache, DynamicLayer, StaticCache, StaticLayer

__all__ = ["GamerCache", "GamerCacheMixin", "GamerStaticCache", "gamer_cache_like"]


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
