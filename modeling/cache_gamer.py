"""Decoding state of a GAMER model as Transformers caches.

`cache.layers` holds exactly the self-attention layers (one per decoder layer), so sequence length,
mask sizes and compilability read as for any decoder. Two named parts sit beside them:

- `cross_level_layers`: keys and values of the cross-level interaction layers, one per such layer
  (`cross_level_mask` lets a cache that keeps only the keys a decode step can read give that step's rule);
- `roles`: the behavior identity of every cached token (0 for pads), which the cross-level rule
  reads for each key and which a fed-back code token inherits from the last cached one.

All are layers of one kind (dynamic, static, or `GamerBeamLayer` for beams that share their prompt), so
beam reordering, cropping (assisted decoding) and batch expansion move all three together.
`GamerBeamCache` is the state `recommend()` and `score_items()` decode on: each prompt's keys once,
then one block of per-beam slots per step, read through a 4D mask by the ordinary forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask
from transformers import PreTrainedConfig
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache, DynamicLayer, StaticCache, StaticLayer

__all__ = [
    "GamerBeamCache", "GamerBeamPromptLayer", "GamerCache", "GamerCacheMixin", "GamerStaticCache", "gamer_cache_like",
]


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
        """[batch] identity of the last cached token, or None while the cache is empty. Gathered at a tensor
        position: a static cache's length is a tensor, and reading it as a Python int breaks a compiled graph."""
        if not self.roles.is_initialized:
            return None
        keys = self.roles.keys[:, 0, :, 0]
        last = torch.as_tensor(self.roles.get_seq_length(), device=keys.device).reshape(1) - 1
        return keys.index_select(1, last).squeeze(1)

    def cross_level_mask(self, query_behavior_ids: torch.Tensor, as_block_mask: bool = False
                         ) -> tuple[torch.Tensor | BlockMask, torch.Tensor] | None:
        """The cross-level rule of this step ([batch, 1, Q, keys] mask, or its flex `BlockMask` with
        `as_block_mask`; [batch, Q] has-key flags) over the keys `update_cross_level` returns, where the cache keeps
        fewer than every key; None: the model builds the rule over every cached key (this cache keeps them all)."""
        return None

    def gathered_cross_level(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values the `index`-th cross-level layer's queries read in this step where the cache keeps none
        of the step's own (the layer then projects queries only and appends nothing); None: it appends its keys
        through `update_cross_level`, as here."""
        return None

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


class GamerBeamLayer(CacheLayerMixin):
    """One layer's keys and values for beams that share their prompt, preallocated.

    Layout along the sequence axis: the prompt's tokens (written once by the prefill), then one block of
    `num_beams` slots per decode step; live beam `b` writes slot `b` of its step's block. Nothing moves when
    beams are reordered: `GamerBeamCache` keeps each beam's ancestors' slots, and its `beam_mask` lets a step's
    queries (its beams' tokens, one per slot of the new block) read the prompt and their own ancestors' slots,
    so the attention layers run as for any cache and any attention backend. The prompt is never copied per beam.
    """

    is_compileable = False
    is_croppable = True
    is_sliding = False

    def __init__(self, num_beams: int, max_new_tokens: int) -> None:
        super().__init__()
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.prompt_length = 0
        self.steps = 0  # filled blocks
        self.width = 1  # live beams per prompt (slots in use per block), set by the cache

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """The prompt's keys and values, then zeroed step blocks: one pass over the prompt (where a zeroed buffer
        copied into was two), and none for a layer with no step blocks, which keeps the prompt's tensors."""
        batch, heads, self.prompt_length, _ = key_states.shape
        slots = self.max_new_tokens * self.num_beams

        def with_blocks(states: torch.Tensor) -> torch.Tensor:
            return torch.cat([states, states.new_zeros(batch, heads, slots, states.shape[-1])], dim=-2) if slots else states

        self.keys, self.values = with_blocks(key_states), with_blocks(value_states)
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefill writes the prompt; each later call writes one block ([batch, heads, width, dim])."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        else:
            if self.steps == self.max_new_tokens:
                raise ValueError(f"this beam cache holds {self.max_new_tokens} decode steps; all are filled")
            if key_states.shape[-2] != self.width:
                raise ValueError(f"a decode step feeds one token per live beam ({self.width}), got "
                                 f"{key_states.shape[-2]}")
            start = self.prompt_length + self.steps * self.num_beams
            self.steps += 1
            self.keys[:, :, start : start + key_states.shape[-2]] = key_states
            self.values[:, :, start : start + value_states.shape[-2]] = value_states
        end = self.get_seq_length()
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        """Slots read by the next step's keys so far (the prompt and the filled blocks)."""
        return self.prompt_length + self.steps * self.num_beams if self.is_initialized else 0

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return self.prompt_length + self.max_new_tokens * self.num_beams if self.is_initialized else -1

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("a GamerBeamLayer's beams are tracked by its GamerBeamCache: reorder the cache")

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last `-tokens_to_remove` decode steps of every beam (never the prompt)."""
        if tokens_to_remove > 0 or -tokens_to_remove > self.steps:
            raise ValueError(f"crop takes a negative count of at most the {self.steps} decoded tokens, "
                             f"got {tokens_to_remove}")
        self.steps += tokens_to_remove

    def reset(self) -> None:
        """Drop the buffers: the next update is a new prompt's prefill, whatever its length."""
        self.keys = self.values = None
        self.is_initialized = False
        self.prompt_length, self.steps, self.width = 0, 0, 1


class GamerBeamPromptLayer(GamerBeamLayer):
    """A cross-level layer of beams that share their prompt: the prompt's keys and values, nothing per beam.

    Every decode token is a code of the interaction its prompt ends with, so the cross-level rule (read earlier
    keys of strictly lower behavior level) never lets the beams read each other's keys, nor their own: they are
    not kept. `gather` keeps, per prompt, the keys a code of that behavior may read, which every step reads.
    """

    def __init__(self) -> None:
        super().__init__(num_beams=1, max_new_tokens=0)
        self.readable: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefill writes the prompt; a decode step's keys are read by no query, and it reads `gather`'s."""
        if not self.is_initialized:
            return super().update(key_states, value_states)
        return self.gathered()

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt keys and values `gather` kept, which every decode step reads."""
        if self.readable is None:
            raise ValueError("a beam decode step reads the gathered prompt keys: call GamerBeamCache.cross_level_mask "
                             "first (the model does, for every forward)")
        return self.readable

    def gather(self, index: torch.Tensor) -> None:
        """Keep the prompt keys `index` ([batch, keys] positions) for the decode steps."""
        batch, heads, length, dim = self.keys.shape
        # whole positions of the [batch * length, heads * dim] view, one index_select: the prefill's keys and values
        # are heads-first views of position-major tensors, so that view is free, where the rows of a
        # [batch * heads * length, dim] view cost a copy of the whole prompt first (2x the time); sdpa reads the
        # heads-first view of the result as fast as a contiguous one, to the bit
        rows = (index + torch.arange(batch, device=index.device)[:, None] * length).view(-1)

        def select(states: torch.Tensor) -> torch.Tensor:
            positions = states.transpose(1, 2).reshape(batch * length, heads * dim)
            return positions.index_select(0, rows).view(batch, -1, heads, dim).transpose(1, 2)

        self.readable = select(self.keys), select(self.values)

    def crop(self, tokens_to_remove: int) -> None:
        """Nothing decoded is kept here (the self-attention layers check the count)."""

    def reset(self) -> None:
        super().reset()
        self.readable = None


def _parents(beam_idx: torch.Tensor, batch: int, width: int, num_beams: int) -> torch.Tensor:
    """[batch, new_width] beam indices within each prompt from flat rows of `batch * width` beams."""
    if beam_idx.numel() % batch:
        raise ValueError(f"{beam_idx.numel()} beam rows do not split evenly over {batch} prompts")
    rows = beam_idx.reshape(batch, -1)
    parents = rows - torch.arange(batch, device=rows.device)[:, None] * width
    if rows.shape[1] > num_beams or bool(((parents < 0) | (parents >= width)).any()):
        raise ValueError(f"beam rows must stay within their prompt's {width} beams and number at most "
                         f"{num_beams} per prompt")
    return parents


class GamerBeamCache(GamerCacheMixin, Cache):
    """Decoding state of `recommend()` and `score_items()`: beams that share one prompt, as a `Cache`.

    Self-attention layers and roles are `GamerBeamLayer`s, the cross-level layers `GamerBeamPromptLayer`s: the
    prefill fills the prompt once per prompt (`[batch, ...]`), and each decode step feeds `[batch, width]` tokens,
    one per live beam and all codes of the prompt's last interaction, with `beam_mask()` as its 4D attention mask
    and explicit `position_ids`. Rows of the logical batch are `batch * width` beams (prompt-major), which
    `reorder_cache` selects as beam search does.
    """

    def __init__(self, config: PreTrainedConfig, attention_mask: torch.Tensor, num_beams: int, max_new_tokens: int
                 ) -> None:
        def make_layer() -> GamerBeamLayer:
            return GamerBeamLayer(num_beams, max_new_tokens)

        super().__init__(layers=[make_layer() for _ in range(config.num_hidden_layers)])
        self.cross_level_layers = [GamerBeamPromptLayer() for _ in config.cross_level_layers]
        self.roles = make_layer()
        self.num_beams = num_beams
        self._level_table = config.layout.level_table().to(attention_mask.device)
        self._readable: tuple[torch.Tensor, torch.Tensor] | None = None  # decode steps' cross-level mask, has-key
        self._additive: torch.Tensor | None = None  # that mask as an additive one, for sdpa and eager
        self._block_masks: dict[int, BlockMask] = {}  # that mask for flex, per count of live beams
        self._prompt = attention_mask.bool()  # [batch, prompt]: the real tokens every beam reads
        # [batch, width, filled blocks]: the slot of each live beam's ancestor (or its own token) in every block
        self._ancestors = torch.zeros(attention_mask.shape[0], 1, 0, dtype=torch.long, device=attention_mask.device)

    def reset(self) -> None:
        super().reset()
        self._readable, self._additive, self._block_masks = None, None, {}
        self._ancestors = self._ancestors[:, :1, :0]

    @property
    def width(self) -> int:
        """Live beams per prompt."""
        return self.layers[0].width

    def _filled_ancestors(self) -> torch.Tensor:
        """`_ancestors` for the blocks filled so far: a block written since holds live beam `b` in slot `b`."""
        filled, ancestors = self.layers[0].steps, self._ancestors[..., : self.layers[0].steps]
        if ancestors.shape[-1] < filled:
            own = torch.arange(self.width, device=ancestors.device)[None, :, None]
            ancestors = torch.cat([ancestors, own.expand(ancestors.shape[0], -1, filled - ancestors.shape[-1])], -1)
        self._ancestors = ancestors
        return ancestors

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep the beams `beam_idx` (flat rows of `batch * width` beams, each among its own prompt's): only their
        ancestry moves, never keys or values."""
        parents = _parents(beam_idx.to(self._prompt.device), self._prompt.shape[0], self.width, self.num_beams)
        ancestors = self._filled_ancestors()
        self._ancestors = ancestors.gather(1, parents[..., None].expand(-1, -1, ancestors.shape[-1]))
        for layer in [*self.layers, self.roles]:
            layer.width = parents.shape[1]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        rows = torch.arange(self._prompt.shape[0] * self.width, device=self._prompt.device)
        self.reorder_cache(rows.repeat_interleave(repeats))

    def beam_mask(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """[batch, 1, width, keys] mask of the next decode step (its queries are the new block): a beam reads the
        prompt's real tokens, its ancestors' slots and its own new slot. Boolean, or with a float `dtype` additive
        (0 where read, the dtype's min elsewhere: the form every backend takes), built as such rather than converted
        from a boolean one (two more passes over the mask every step)."""
        ancestors = self._filled_ancestors()
        batch, width, filled = ancestors.shape
        prompt = self._prompt.shape[1]
        blocks = torch.arange(filled + 1, device=ancestors.device) * self.num_beams + prompt
        own = torch.arange(width, device=ancestors.device)[None, :, None].expand(batch, -1, 1)
        slots = blocks + torch.cat([ancestors, own], dim=-1)  # [batch, width, filled + 1] key positions
        dtype, read, unread = (torch.bool, True, False) if dtype is None else (dtype, 0.0, torch.finfo(dtype).min)
        mask = torch.full((batch, width, prompt + (filled + 1) * self.num_beams), unread, dtype=dtype,
                          device=ancestors.device)
        mask[..., :prompt].masked_fill_(self._prompt[:, None, :], read)
        return mask.scatter_(2, slots, read)[:, None]

    def last_behavior_ids(self) -> torch.Tensor | None:
        """Every beam continues its prompt, whose last token is the requested behavior."""
        if not self.roles.is_initialized:
            return None
        return self.roles.keys[:, 0, self.roles.prompt_length - 1, 0]

    def gathered_cross_level(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A decode step's cross-level keys: the prompt keys `cross_level_mask` gathered (None for the prefill)."""
        return self.cross_level_layers[index].gathered() if self.roles.steps else None

    def cross_level_mask(self, query_behavior_ids: torch.Tensor, as_block_mask: bool = False
                         ) -> tuple[torch.Tensor | BlockMask, torch.Tensor] | None:
        """A decode step's cross-level rule over the prompt keys its codes may read (None for the prefill).

        Gathered once per call: the real prompt keys of strictly lower level than the prompt's last behavior, in
        order, padded per prompt to the most any prompt reads. A prompt that reads none reads its first key, and
        its output is zeroed by the has-key flag, as the model does for such rows. The rule is the same for every
        beam and step, so it is made once per call: an additive mask (0 where readable), or with `as_block_mask` a
        flex `BlockMask` (per count of live beams).
        """
        if self.roles.steps == 0:
            return None
        last = self.last_behavior_ids()
        if not bool((query_behavior_ids == last[:, None]).all()):
            raise ValueError("a beam decode step feeds codes of each prompt's last interaction (its requested "
                             "behavior), not behavior tokens")
        if self._readable is None:
            roles = self.roles.keys[:, 0, : self.roles.prompt_length, 0]
            levels = self._level_table[roles]
            readable = (roles > 0) & (levels < self._level_table[last][:, None])
            counts = readable.sum(-1)
            width = max(int(counts.max()), 1)
            index = torch.sort((~readable).to(torch.uint8), dim=-1, stable=True).indices[:, :width]
            has_key = counts > 0
            keep = torch.arange(width, device=counts.device) < torch.where(has_key, counts, 1)[:, None]
            for layer in self.cross_level_layers:
                layer.gather(index)
            self._readable = keep[:, None, None, :], has_key[:, None]
        keep, has_key = self._readable
        width = query_behavior_ids.shape[1]
        if not as_block_mask:  # additive (0 where kept), made once: a boolean mask is converted in every sdpa call
            if self._additive is None:
                dtype = self.cross_level_layers[0].keys.dtype
                self._additive = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(
                    ~keep, torch.finfo(dtype).min)
            return self._additive.expand(-1, -1, width, -1), has_key.expand(-1, width)
        if width not in self._block_masks:
            self._block_masks[width] = create_block_mask(lambda b, h, q, kv: keep[b, 0, 0, kv], keep.shape[0], None,
                                                         width, keep.shape[-1], device=keep.device)
        return self._block_masks[width], has_key.expand(-1, width)
