"""Attention backends: flex attention (both attention kinds, the cross-level rule as a BlockMask) gives the
sdpa/eager results; flash attention is refused where the cross-level rule cannot be expressed.

Flex runs here with `torch.compiler.set_stance("force_eager")`: on torch 2.13 CPU, Inductor's compiled flex
kernel fails to build (a C++ compile error in its CPU template) for some cross-level masks, so the tests check
the mask and the wiring through flex's reference path, which takes the same BlockMask.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DataCollatorWithFlattening

from gamer_hf import GamerConfig, GamerForCausalLM


def _lm(tokenizer, **overrides) -> GamerForCausalLM:
    torch.manual_seed(0)
    return GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, **overrides)).eval()


@pytest.fixture
def eager_flex():
    with torch.compiler.set_stance("force_eager"):
        yield


def _logits(model, implementation: str, **inputs) -> torch.Tensor:
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("overrides", [{}, {"cross_level_layers": [0, 1]}])
def test_flex_equals_sdpa_and_eager_padded_and_packed(make_histories, tokenizer, overrides, eager_flex) -> None:
    model = _lm(tokenizer, **overrides)
    histories = make_histories(tokenizer, 4, seed=30, max_len=7)
    batch = tokenizer.encode_histories(histories, behavior="buy", return_tensors="pt")
    real = batch["attention_mask"].bool()
    packed = DataCollatorWithFlattening(return_position_ids=True)(
        [{"input_ids": tokenizer.encode_interactions(h)} for h in histories])
    packed = {"input_ids": packed["input_ids"], "position_ids": packed["position_ids"]}
    for inputs, keep in ((batch, real), (packed, torch.ones_like(packed["input_ids"], dtype=torch.bool))):
        expected = _logits(model, "eager", **inputs)[keep]
        for implementation in ("sdpa", "flex_attention"):
            assert torch.allclose(_logits(model, implementation, **inputs)[keep], expected, atol=1e-5), implementation


def test_flex_decodes_like_sdpa(make_histories, tokenizer, eager_flex) -> None:
    """Cached generate() and recommend()'s shared-prompt beams (an additive mask for flex) through flex."""
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    histories = make_histories(tokenizer, 3, seed=31)
    batch = tokenizer.encode_histories(histories, behavior="buy", return_tensors="pt")
    results = {}
    for implementation in ("sdpa", "flex_attention"):
        model.set_attn_implementation(implementation)
        out = model.generate(**batch, max_new_tokens=tokenizer.num_levels, do_sample=False, output_scores=True,
                             return_dict_in_generate=True)
        results[implementation] = out, model.recommend(tokenizer, histories, top_k=5)
    (sdpa, sdpa_recs), (flex, flex_recs) = results["sdpa"], results["flex_attention"]
    assert torch.equal(flex.sequences, sdpa.sequences)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(flex.scores, sdpa.scores))
    assert [[item for item, _ in row] for row in flex_recs] == [[item for item, _ in row] for row in sdpa_recs]


def test_the_cross_level_block_mask_skips_blocks(tokenizer) -> None:
    """A long history whose late tokens are all clicks (the lowest level): their blocks read nothing."""
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    behavior = torch.tensor([[3] * 128 + [1] * 128])  # identity 3 (buy) then 1 (click), levels 2 then 0
    blocks = model.model._level_block_mask(behavior, behavior, 0, None, None, torch.zeros_like(behavior).bool())
    dense = model.model._level_mask(behavior, behavior)[0]
    assert torch.equal(blocks.to_dense().bool()[0, 0], (dense[0, 0].view(2, 128, 2, 128).any(-1).any(1)))
    assert blocks.sparsity() > 0


def test_flash_attention_is_refused_with_cross_level_layers(tokenizer) -> None:
    model = _lm(tokenizer, cross_level_layers=[1])
    with pytest.raises(ValueError, match="cannot run GAMER's cross-level layers"):
        model.set_attn_implementation("flash_attention_2")
    assert model.config._attn_implementation == "sdpa"  # unchanged
    plain = _lm(tokenizer, cross_level_layers=[])
    with pytest.raises(Exception) as error:  # allowed by GAMER; this machine has no flash-attn (or GPU)
        plain.set_attn_implementation("flash_attention_2")
    assert "cross-level" not in str(error.value)
