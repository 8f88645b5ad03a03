"""The shared-prompt beam state of recommend() as a Transformers cache (`GamerBeamCache`)."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import Cache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from gamer_hf import GamerConfig, GamerForCausalLM, make_prefix_allowed_tokens_fn
from gamer_hf.modeling.cache_gamer import GamerBeamCache, GamerBeamLayer, GamerBeamPromptLayer


def _lm(tokenizer, attn: str = "sdpa", **overrides) -> GamerForCausalLM:
    torch.manual_seed(3)
    config = GamerConfig.from_preset("tiny", tokenizer=tokenizer, attn_implementation=attn, **overrides)
    return GamerForCausalLM(config).eval()


def _codes(tokenizer, rows: int, depth: int, seed: int) -> torch.Tensor:
    """[rows] random code tokens of level `depth`."""
    generator = torch.Generator().manual_seed(seed)
    size = tokenizer.codebook_sizes[depth]
    return torch.randint(size, (rows,), generator=generator) + tokenizer.code_token_offsets[depth]


@pytest.mark.parametrize(("attn", "behavior"),
                         [("sdpa", "cart"), ("eager", "cart"), ("sdpa", "click"), ("sdpa", "buy")])
@pytest.mark.parametrize("overrides", [{}, {"cross_level_layers": [0, 1]}])
@torch.no_grad()
def test_beam_steps_equal_full_forwards_of_each_beam(tokenizer, make_histories, attn, behavior, overrides) -> None:
    """Expand, reorder (repeated parents, changing width) and step: every beam's logits are those of a plain
    forward over its prompt and its own tokens; beams move by ancestry alone, and the cross-level layers read the
    gathered prompt keys of lower level (none under the lowest behavior, click)."""
    model = _lm(tokenizer, attn, **overrides)
    batch = tokenizer.encode_histories(make_histories(tokenizer, 3, seed=4), behavior=behavior, return_tensors="pt")
    prompt, mask = batch["input_ids"], batch["attention_mask"]
    cache = GamerBeamCache(model.config, mask, num_beams=4, max_new_tokens=2)
    model(**batch, cache=cache, use_cache=True, logits_to_keep=1)
    position = mask.sum(-1, keepdim=True) - 1
    paths = [torch.arange(3).repeat_interleave(3)]  # prompt of each beam, then its tokens
    cache.reorder_cache(torch.arange(3).repeat_interleave(3))  # width 1 -> 3
    for depth, rows in enumerate([None, torch.tensor([2, 2, 0, 1, 5, 4, 3, 3, 8, 7, 7, 6])]):  # then width 3 -> 4
        if rows is not None:
            cache.reorder_cache(rows)
            paths = [path[rows] for path in paths]
        tokens = _codes(tokenizer, len(paths[0]), depth, seed=depth)
        paths.append(tokens)
        width = len(tokens) // 3
        allowed, additive = cache.beam_mask(), cache.beam_mask(model.dtype)  # the two forms of one mask
        assert allowed.dtype == torch.bool and torch.equal(additive, torch.zeros_like(additive).masked_fill(
            ~allowed, torch.finfo(model.dtype).min))
        logits = model(input_ids=tokens.view(3, width), attention_mask=[allowed, additive][depth], cache=cache,
                       position_ids=(position + 1 + depth).expand(3, width), use_cache=True).logits
        full_ids = torch.cat([prompt[paths[0]], torch.stack(paths[1:], dim=1)], dim=1)
        full_mask = torch.cat([mask[paths[0]], torch.ones(len(tokens), depth + 1, dtype=mask.dtype)], dim=1)
        expected = model(input_ids=full_ids, attention_mask=full_mask).logits[:, -1]
        torch.testing.assert_close(logits.reshape(len(tokens), -1), expected, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_beam_cache_holds_each_prompt_once(tokenizer, model, histories) -> None:
    batch = tokenizer.encode_histories(histories, behavior="buy", return_tensors="pt")
    batch_size, prompt_length = batch["input_ids"].shape
    cache = GamerBeamCache(model.config, batch["attention_mask"], num_beams=6, max_new_tokens=2)
    assert isinstance(cache, Cache) and len(cache.layers) == model.config.num_hidden_layers
    assert len(cache.cross_level_layers) == len(model.config.cross_level_layers)
    assert all(isinstance(layer, GamerBeamLayer) for layer in [*cache.layers, cache.roles])
    assert all(isinstance(layer, GamerBeamPromptLayer) for layer in cache.cross_level_layers)
    model(**batch, cache=cache, use_cache=True)
    assert cache.get_seq_length() == prompt_length
    shape = (batch_size, model.config.num_key_value_heads, prompt_length, model.config.head_dim)
    for layer in cache.layers:  # the prompt, then room for 2 steps of 6 beams
        assert layer.keys.shape == (*shape[:2], prompt_length + 12, shape[-1])
    for layer in cache.cross_level_layers:  # the prompt alone: no beam reads another's cross-level keys
        assert layer.keys.shape == shape
    assert cache.beam_mask().shape == (batch_size, 1, 1, prompt_length + 6)
    cache.reorder_cache(torch.arange(batch_size).repeat_interleave(6))
    assert cache.width == 6 and cache.beam_mask().shape == (batch_size, 1, 6, prompt_length + 6)
    assert cache.last_behavior_ids().tolist() == [tokenizer.layout.behavior_names.index("buy") + 1] * batch_size


@torch.no_grad()
def test_beam_cache_refuses_what_breaks_its_layout(tokenizer, model, histories) -> None:
    batch = tokenizer.encode_histories(histories[:2], return_tensors="pt")
    cache = GamerBeamCache(model.config, batch["attention_mask"], num_beams=3, max_new_tokens=1)
    model(**batch, cache=cache, use_cache=True)
    with pytest.raises(ValueError, match="within their prompt's 1 beams"):
        cache.reorder_cache(torch.tensor([0, 1, 1, 1]))  # the second prompt's rows on the first prompt
    with pytest.raises(ValueError, match="at most 3 per prompt"):
        cache.reorder_cache(torch.tensor([0] * 4 + [1] * 4))
    cache.reorder_cache(torch.tensor([0, 0, 1, 1]))
    step = dict(attention_mask=cache.beam_mask(), cache=cache, position_ids=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"one token per live beam \(2\), got 3"):
        model(input_ids=_codes(tokenizer, 6, 0, seed=0).view(2, 3), **step)
    model(input_ids=_codes(tokenizer, 4, 0, seed=0).view(2, 2), **step)
    with pytest.raises(ValueError, match="holds 1 decode steps; all are filled"):
        model(input_ids=_codes(tokenizer, 4, 1, seed=0).view(2, 2), **step)
    cache.crop(-1)  # the step is undone: the slots are free again
    assert cache.get_seq_length() == batch["input_ids"].shape[1]
    behavior_token = tokenizer.layout.behavior_token_offset
    with pytest.raises(ValueError, match="codes of each prompt's last interaction"):
        model(input_ids=torch.full((2, 2), behavior_token), **step)  # no beam reads another's cross-level keys


@pytest.fixture
def recorded_attention(monkeypatch):
    """An attention backend registered with Transformers (with sdpa's masks) that records each call's query shape."""
    shapes: list[tuple[int, ...]] = []

    def recording(module, query, *args, **kwargs):
        shapes.append(tuple(query.shape))
        return sdpa_attention_forward(module, query, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "gamer_test_recording", recording)
    monkeypatch.setitem(AttentionMaskInterface._global_mapping, "gamer_test_recording", sdpa_mask)
    return shapes


def test_recommend_decodes_its_beams_through_the_attention_interface(tokenizer, histories, recorded_attention) -> None:
    """The beams of a prompt reach the configured attention function as its query rows, and sdpa, eager and a
    registered backend return the same lists as stock `generate(prefix_allowed_tokens_fn)`."""
    lists = {}
    for attn in ["sdpa", "eager", "gamer_test_recording"]:
        model = _lm(tokenizer, "sdpa")
        model.config._attn_implementation = attn
        lists[attn] = model.recommend(tokenizer, histories, behavior="buy", top_k=20, num_beams=20)
    config = model.config
    calls_per_forward = config.num_hidden_layers + len(config.cross_level_layers)
    first_width = min(20, tokenizer.codebook_sizes[0])  # one beam per first-level code, then 20
    widths = [shape[2] for shape in recorded_attention[calls_per_forward:]]
    assert widths == [first_width] * calls_per_forward + [20] * calls_per_forward * (tokenizer.num_levels - 2)
    assert all(shape[0] == len(histories) for shape in recorded_attention)  # the prompts, never a copy per beam
    batch = tokenizer.encode_histories(histories, behavior="buy", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=tokenizer.num_levels, num_beams=20, num_return_sequences=20,
                             do_sample=False, length_penalty=0.0,
                             prefix_allowed_tokens_fn=make_prefix_allowed_tokens_fn(tokenizer))
    stock = tokenizer.decode_items(out[:, batch["input_ids"].shape[1] :])
    for attn, recs in lists.items():
        assert [item for row in recs for item, _ in row] == stock, attn
    for row, other in zip(lists["sdpa"], lists["eager"]):
        assert [s for _, s in row] == pytest.approx([s for _, s in other], abs=1e-5)
