"""Attention backends: flex attention (both attention kinds, the cross-level rule as a BlockMask) gives the
sdpa/eager results; flash attention is refused where the cross-level rule cannot be expressed; sdpa's blocked
path for attention dropout on CPU gives the results of one call.

Flex runs here with `torch.compiler.set_stance("force_eager")`: on torch 2.13 CPU, Inductor's compiled flex
kernel fails to build (a C++ compile error in its CPU template) for some cross-level masks, so the tests check
the mask and the wiring through flex's reference path, which takes the same BlockMask.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from transformers import DataCollatorWithFlattening
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from gamer_hf import GamerConfig, GamerForCausalLM
from gamer_hf.modeling import modeling_gamer


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


def test_flex_beams_build_the_cross_level_block_mask_once_per_call(make_histories, tokenizer, eager_flex,
                                                                   monkeypatch) -> None:
    """The beams' cross-level rule is the same at every step: one BlockMask per recommend() call, not per step,
    with the scores of sdpa."""
    from gamer_hf.modeling import cache_gamer

    model = _lm(tokenizer, cross_level_layers=[0, 1])
    histories = make_histories(tokenizer, 3, seed=32)
    expected = model.recommend(tokenizer, histories, top_k=5, num_beams=5)  # 5 live beams at both decode steps
    built = []

    def counted(*args, **kwargs):
        built.append(args[3])  # the query count: one per live beam
        return create_block_mask(*args, **kwargs)

    create_block_mask = cache_gamer.create_block_mask
    monkeypatch.setattr(cache_gamer, "create_block_mask", counted)
    model.set_attn_implementation("flex_attention")
    got = model.recommend(tokenizer, histories, top_k=5, num_beams=5)
    assert built == [5] and tokenizer.num_levels == 3
    for got_row, expected_row in zip(got, expected):
        assert [item for item, _ in got_row] == [item for item, _ in expected_row]
        assert [score for _, score in got_row] == pytest.approx([score for _, score in expected_row], abs=1e-5)


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


@pytest.fixture
def small_blocks(monkeypatch):
    """Query blocks of 8 rows, so short test sequences span several."""
    monkeypatch.setattr(modeling_gamer, "QUERY_BLOCK", 8)


def _attention_masks(length: int) -> dict[str, torch.Tensor | None]:
    """[2, 1, L, L] boolean masks: causal with right padding, packed (two sequences per row), and cross-level-like
    (causal, strictly lower level, rows without a key reading their own position)."""
    index = torch.arange(length)
    causal = index[None, :] <= index[:, None]
    real = torch.tensor([length, length - 9])[:, None] > index
    padded = causal & real[:, None, :]
    sequence = (index >= torch.tensor([[13], [30]])).long()
    packed = causal & (sequence[:, None, :] == sequence[:, :, None])
    level = torch.randint(0, 3, (2, length), generator=torch.Generator().manual_seed(0))
    cross = causal & (level[:, None, :] < level[:, :, None])
    cross = cross | (torch.eye(length, dtype=torch.bool) & ~cross.any(-1, keepdim=True))
    return {"causal": None, "padded": padded[:, None], "packed": packed[:, None], "cross_level": cross[:, None]}


@pytest.mark.parametrize("kind", ["causal", "padded", "packed", "cross_level"])
def test_query_blocked_attention_equals_one_call(kind, small_blocks) -> None:
    """Output and gradients of the blocked path (sdpa with attention dropout on CPU) equal one sdpa call."""
    length, module = 37, torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 2, kind == "causal"
    mask = _attention_masks(length)[kind]
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, heads, length, 16, generator=generator, requires_grad=True) for heads in (4, 2, 2)]
    results = []
    for attend in (sdpa_attention_forward, partial(modeling_gamer.query_blocked_attention, sdpa_attention_forward)):
        out, _ = attend(module, *inputs, mask, scaling=0.25)
        results.append((out, *torch.autograd.grad(out.square().sum(), inputs)))
    for blocked, whole in zip(*results):
        assert torch.allclose(blocked, whole, atol=1e-5)


def test_training_with_attention_dropout_runs_blocked_like_one_call(make_histories, tokenizer, small_blocks,
                                                                    monkeypatch) -> None:
    """A training forward with attention dropout takes the blocked path; with the dropout draws switched off it
    gives the eval forward's loss and gradients, padded and packed (cross-level layers included)."""
    model = _lm(tokenizer, cross_level_layers=[0, 1], attention_dropout=0.1)
    calls = []

    def without_dropout(*args, dropout_p=0.0, **kwargs):
        calls.append(dropout_p)
        return sdpa(*args, **kwargs)

    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", without_dropout)
    histories = make_histories(tokenizer, 4, seed=32, max_len=9)
    padded = tokenizer.encode_histories(histories, return_tensors="pt")
    packed = DataCollatorWithFlattening(return_position_ids=True)(
        [{"input_ids": tokenizer.encode_interactions(h)} for h in histories])
    for inputs in ({**padded, "labels": padded["input_ids"]}, dict(packed)):
        results = []
        for training in (False, True):
            calls.clear()
            model.train(training)
            loss = model(**inputs).loss
            results.append((loss, *torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
            attention_calls = len(calls)
        assert attention_calls > 4 and 0.1 in calls  # 2 layers x 2 kinds, each in several blocks
        for blocked, whole in zip(*results[::-1]):
            if whole is not None:
                assert torch.allclose(blocked, whole, atol=1e-5)


def test_sdpa_is_one_registered_function_of_the_model(tokenizer, histories, monkeypatch) -> None:
    """`sdpa` resolves to GAMER's own entry in the model's attention table (Transformers' `sdpa` stays as it is for
    other models), every attention call of a forward goes through it, and other names reach the global table."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert modeling_gamer.ALL_ATTENTION_FUNCTIONS["sdpa"] is modeling_gamer.gamer_sdpa_attention_forward
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_attention_forward
    assert modeling_gamer.ALL_ATTENTION_FUNCTIONS["flex_attention"] is ALL_ATTENTION_FUNCTIONS["flex_attention"]
    calls = []

    def spy(module, query, *args, **kwargs):
        calls.append(type(module).__name__)
        return modeling_gamer.gamer_sdpa_attention_forward(module, query, *args, **kwargs)

    monkeypatch.setitem(modeling_gamer.ALL_ATTENTION_FUNCTIONS, "sdpa", spy)
    model = _lm(tokenizer, cross_level_layers=[1])
    batch = tokenizer.encode_histories(histories, return_tensors="pt")
    with torch.no_grad():
        sdpa_logits = model(**batch).logits
    assert calls == ["GamerAttention", "GamerAttention", "GamerCrossLevelAttention"]
    model.set_attn_implementation("eager")  # switchable at run time: the model dispatches through the interface
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits[real], sdpa_logits[real], atol=1e-5)
    assert len(calls) == 3
