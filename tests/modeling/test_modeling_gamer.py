from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, DynamicCache

from gamer_hf import GamerCache, GamerConfig, GamerForCausalLM, GamerModel, GamerStaticCache, GamerTokenizerFast
from gamer_hf.modeling.configuration_gamer import REMOTE_CODE_FILES
from gamer_hf.modeling.modeling_gamer import GamerTokenRoles



def _lm(tokenizer: GamerTokenizerFast, **overrides) -> GamerForCausalLM:
    torch.manual_seed(0)
    return GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, **overrides)).eval()


def _batch(tokenizer, histories, behavior="buy"):
    return tokenizer.encode_histories(histories, behavior=behavior, return_tensors="pt")


def test_token_roles(make_histories, tokenizer: GamerTokenizerFast) -> None:
    ids = _batch(tokenizer, [[("click", "item1"), ("buy", "item2")], [("cart", "item3")]], behavior="cart")["input_ids"]
    roles = GamerTokenRoles.from_input_ids(ids, GamerConfig.from_preset("tiny", tokenizer=tokenizer))
    # row 1 is left padded by one interaction (4 tokens)
    assert roles.item_position_ids[1].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 1]
    assert roles.behavior_ids[1].tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 2]
    assert roles.behavior_ids[0].tolist() == [1, 1, 1, 1, 3, 3, 3, 3, 2]


@pytest.mark.parametrize("overrides", [{}, {"cross_level_layers": [0, 1]}, {"use_expert_ffn": False}])
def test_causality_under_perturbation(make_histories, tokenizer: GamerTokenizerFast, overrides: dict) -> None:
    """Changing tokens after position t never changes logits at positions <= t."""
    model = _lm(tokenizer, **overrides)
    histories = make_histories(tokenizer, 4, seed=3, max_len=5)
    batch = _batch(tokenizer, histories)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    base = model(input_ids=ids, attention_mask=mask).logits
    generator = torch.Generator().manual_seed(0)
    for t in range(ids.shape[1] - 1):
        perturbed = ids.clone()
        # replace later tokens by random non-special tokens (any role: behavior or code)
        perturbed[:, t + 1 :] = torch.randint(3, len(tokenizer), perturbed[:, t + 1 :].shape, generator=generator)
        out = model(input_ids=perturbed, attention_mask=mask).logits
        real = mask[:, : t + 1].bool()
        assert torch.allclose(out[:, : t + 1][real], base[:, : t + 1][real], atol=1e-5), t


def test_cross_level_reads_only_earlier_lower_levels(make_histories, tokenizer: GamerTokenizerFast) -> None:
    model = _lm(tokenizer, cross_level_layers=[0])
    layer = model.model.layers[0].cross_attn
    histories = [[("buy", "item1"), ("click", "item2"), ("cart", "item3"), ("click", "item4"), ("buy", "item5")]]
    ids = _batch(tokenizer, histories, behavior="cart")["input_ids"]
    roles = GamerTokenRoles.from_input_ids(ids, model.config)
    positions = torch.arange(ids.shape[1])[None]
    level_mask, has_key = model.model._level_mask(roles.behavior_ids, roles.behavior_ids)
    rope = model.model.rotary_emb(torch.zeros(1), positions)
    levels = model.model.level_table[roles.behavior_ids][0]
    torch.manual_seed(1)
    hidden = torch.randn(1, ids.shape[1], model.config.hidden_size)
    base = layer(hidden, rope, level_mask, has_key, roles.behavior_ids)[0]
    n = ids.shape[1]
    readable = (torch.arange(n)[None, :] <= torch.arange(n)[:, None]) & (levels[None, :] < levels[:, None])
    silent = ~readable.any(-1)  # lowest-level tokens, and the leading buy that has nothing lower before it
    assert silent[levels == levels.min()].all() and silent[:4].all()
    assert torch.equal(base[0, silent], torch.zeros_like(base[0, silent]))
    assert (base[0, ~silent].abs().sum(-1) > 0).all()
    for j in range(ids.shape[1]):
        bumped = hidden.clone()
        bumped[0, j] += torch.randn(model.config.hidden_size)
        changed = (layer(bumped, rope, level_mask, has_key, roles.behavior_ids)[0] - base).abs().amax(-1)[0] > 1e-6
        # a token's own state drives its query and gate; other tokens matter only as readable keys
        expected = readable[:, j] | ((torch.arange(n) == j) & ~silent)
        assert changed.tolist() == expected.tolist(), j


def test_pads_neither_attend_nor_are_attended(make_histories, tokenizer: GamerTokenizerFast) -> None:
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    histories = make_histories(tokenizer, 3, seed=5, max_len=4)
    batch = _batch(tokenizer, histories)
    base = model(**batch).logits
    ids = batch["input_ids"].clone()
    ids[batch["attention_mask"] == 0] = tokenizer.code_token_offsets[0]  # garbage where the mask says pad
    out = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    assert torch.allclose(out[real], base[real], atol=1e-5)


def test_cached_decoding_equals_full_forward(make_histories, tokenizer: GamerTokenizerFast) -> None:
    """Prefill (left padded, ending with the requested behavior) + one-token steps == teacher forcing."""
    model = _lm(tokenizer)
    histories = make_histories(tokenizer, 4, seed=7)
    batch = _batch(tokenizer, histories, behavior="cart")
    targets = torch.tensor([tokenizer.item_token_ids(item) for item in ["item3", "item9", "item30", "item99"]])
    full_ids = torch.cat([batch["input_ids"], targets], dim=1)
    full_mask = torch.cat([batch["attention_mask"], torch.ones_like(targets)], dim=1)
    full = model(input_ids=full_ids, attention_mask=full_mask).logits
    prompt_len = batch["input_ids"].shape[1]
    cache = GamerCache(model.config)
    out = model(**batch, cache=cache, use_cache=True)
    step_logits = [out.logits[:, -1]]
    for k in range(targets.shape[1] - 1):
        length = prompt_len + k + 1
        inputs = model.prepare_inputs_for_generation(
            full_ids[:, :length], cache=cache, attention_mask=full_mask[:, :length], next_sequence_length=1,
            position_ids=(full_mask[:, :length].cumsum(-1) - 1).clamp(min=0),
        )
        step_logits.append(model(**inputs).logits[:, -1])
    cached = torch.stack(step_logits, dim=1)
    assert torch.allclose(cached, full[:, prompt_len - 1 : -1], atol=1e-4)


def test_generate_scores_match_teacher_forcing(make_histories, tokenizer: GamerTokenizerFast, model: GamerForCausalLM) -> None:
    from gamer_hf import GamerConstrainedLogitsProcessor

    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=11), behavior="click")
    out = model.generate(
        **batch, max_new_tokens=tokenizer.num_levels, do_sample=False, num_beams=1,
        logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)], output_logits=True, return_dict_in_generate=True,
    )
    full = model(input_ids=out.sequences, attention_mask=torch.ones_like(out.sequences).masked_fill(
        torch.cat([batch["attention_mask"] == 0, torch.zeros(3, tokenizer.num_levels, dtype=torch.bool)], 1), 0)).logits
    prompt_len = batch["input_ids"].shape[1]
    for k, step in enumerate(out.logits):
        assert torch.allclose(step, full[:, prompt_len - 1 + k], atol=1e-4)


def test_loss_scores_code_tokens_with_temperature(make_histories, tokenizer: GamerTokenizerFast, model: GamerForCausalLM) -> None:
    batch = tokenizer.encode_histories(make_histories(tokenizer, 2, seed=2), return_tensors="pt")
    labels = batch["input_ids"].masked_fill(~tokenizer.code_token_mask(batch["input_ids"]), -100)
    out = model(**batch, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1]) / model.config.training_temperature
    expected = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(out.loss, expected, atol=1e-5)


def test_few_steps_overfit_a_small_batch(make_histories, tokenizer: GamerTokenizerFast) -> None:
    torch.manual_seed(0)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer)).train()
    batch = tokenizer.encode_histories(make_histories(tokenizer, 8, seed=4), return_tensors="pt")
    labels = batch["input_ids"].masked_fill(~tokenizer.code_token_mask(batch["input_ids"]), -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer: GamerTokenizerFast, model: GamerForCausalLM) -> Path:
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_checkpoint_carries_remote_code(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoTokenizer"}
    assert json.loads((saved / "tokenizer_config.json").read_text())["auto_map"]["AutoTokenizer"][1].endswith("GamerTokenizerFast")
    for name in REMOTE_CODE_FILES:
        assert (saved / name).is_file()
    assert (saved / "model.safetensors").is_file()


def test_auto_classes_round_trip(saved: Path, tokenizer, model, histories) -> None:
    assert isinstance(AutoConfig.from_pretrained(saved), GamerConfig)
    loaded_tok = AutoTokenizer.from_pretrained(saved)
    lm = AutoModelForCausalLM.from_pretrained(saved).eval()
    base = AutoModel.from_pretrained(saved).eval()
    assert isinstance(lm, GamerForCausalLM) and isinstance(base, GamerModel)
    batch = _batch(loaded_tok, histories)
    assert torch.equal(lm(**batch).logits, model(**batch).logits)
    assert torch.allclose(base(**batch).last_hidden_state, model.model(**batch).last_hidden_state)
    assert lm.recommend(loaded_tok, histories, behavior="buy", top_k=5) == model.recommend(tokenizer, histories, behavior="buy", top_k=5)


REMOTE_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
path, histories = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
lm = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
assert "gamer_hf" not in type(lm).__module__, type(lm).__module__
batch = tok.encode_histories([[tuple(p) for p in h] for h in histories], behavior="buy", return_tensors="pt")
with torch.no_grad():
    out = {"logits": lm(**batch).logits.tolist(), "hidden": base(**batch).last_hidden_state.tolist(),
           "recs": lm.recommend(tok, [[tuple(p) for p in h] for h in histories], behavior="buy", top_k=5)}
print(json.dumps(out))
"""


def test_remote_code_without_gamer_hf(saved: Path, tokenizer, model, histories, run_without_gamer_hf) -> None:
    out = run_without_gamer_hf(REMOTE_SCRIPT, str(saved), json.dumps(histories))
    batch = _batch(tokenizer, histories)
    assert torch.allclose(torch.tensor(out["logits"]), model(**batch).logits, atol=1e-6)
    assert torch.allclose(torch.tensor(out["hidden"]), model.model(**batch).last_hidden_state, atol=1e-6)
    expected = model.recommend(tokenizer, histories, behavior="buy", top_k=5)
    assert [[item for item, _ in row] for row in out["recs"]] == [[item for item, _ in row] for row in expected]


# ----- Transformers features (issue 11) -----


def _roles_of(model, ids):
    roles = GamerTokenRoles.from_input_ids(ids, model.config)
    return dict(behavior_ids=roles.behavior_ids, item_position_ids=roles.item_position_ids)


@pytest.fixture(scope="module")
def eager_lm(tokenizer) -> GamerForCausalLM:
    torch.manual_seed(0)
    config = GamerConfig.from_preset("tiny", tokenizer=tokenizer, cross_level_layers=[1])
    config._attn_implementation = "eager"
    return GamerForCausalLM(config).eval()


def test_attentions_and_hidden_states(make_histories, tokenizer, eager_lm) -> None:
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=8))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    out = eager_lm(**batch, output_attentions=True, output_hidden_states=True)
    config, (size, length) = eager_lm.config, ids.shape
    assert len(out.attentions) == config.num_hidden_layers and len(out.cross_attentions) == 1
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[0], eager_lm.model.embed_tokens(ids))
    assert torch.allclose(out.hidden_states[-1], eager_lm.model(**batch).last_hidden_state)
    real = mask.bool()
    for weights in out.attentions:
        assert weights.shape == (size, config.num_attention_heads, length, length)
        assert torch.allclose(weights.sum(-1)[real[:, None].expand_as(weights.sum(-1))], torch.tensor(1.0), atol=1e-5)
        rows = weights.transpose(1, 2)[real]  # [real queries, heads, keys]
        assert (weights.triu(1).transpose(1, 2)[real] == 0).all()  # causal
        assert (rows.transpose(0, 1)[..., ~real.any(0)] == 0).all()  # no query reads a column padded in every row
    roles = GamerTokenRoles.from_input_ids(ids, config)
    allowed, has_key = eager_lm.model._level_mask(roles.behavior_ids.masked_fill(~real, 0),
                                                  roles.behavior_ids.masked_fill(~real, 0))
    cross = out.cross_attentions[0]
    assert cross.shape == (size, config.num_attention_heads, length, length)
    hidden = ~allowed.expand_as(cross) & real[:, None, :, None]
    assert (cross[hidden] == 0).all()  # a real token never reads a higher-or-equal level or a later token


def test_return_dict_false_gives_tuples(make_histories, tokenizer, eager_lm) -> None:
    batch = _batch(tokenizer, make_histories(tokenizer, 2, seed=9))
    labels = batch["input_ids"].masked_fill(~tokenizer.code_token_mask(batch["input_ids"]), -100)
    as_dict = eager_lm(**batch, labels=labels, output_attentions=True)
    as_tuple = eager_lm(**batch, labels=labels, output_attentions=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.loss) and torch.equal(as_tuple[1], as_dict.logits)
    base = eager_lm.model(**batch, return_dict=False)
    assert isinstance(base, tuple) and torch.equal(base[0], eager_lm.model(**batch).last_hidden_state)


def test_generate_returns_attentions_and_hidden_states(make_histories, tokenizer, eager_lm) -> None:
    from gamer_hf import GamerConstrainedLogitsProcessor

    batch = _batch(tokenizer, make_histories(tokenizer, 2, seed=10))
    out = eager_lm.generate(
        **batch, max_new_tokens=tokenizer.num_levels, do_sample=False, return_dict_in_generate=True,
        output_attentions=True, output_hidden_states=True, logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)],
    )
    assert len(out.attentions) == len(out.hidden_states) == tokenizer.num_levels
    length = batch["input_ids"].shape[1]
    assert out.attentions[0][0].shape[-2:] == (length, length)
    assert out.attentions[-1][0].shape[-2:] == (1, length + tokenizer.num_levels - 1)
    assert len(out.hidden_states[0]) == eager_lm.config.num_hidden_layers + 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_finite_and_close(make_histories, tokenizer, dtype) -> None:
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    batch = _batch(tokenizer, make_histories(tokenizer, 4, seed=12, max_len=8))
    reference = model(**batch).logits
    half = _lm(tokenizer, cross_level_layers=[0, 1]).to(dtype)
    logits = half(**batch).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    real = batch["attention_mask"].bool()
    scale = reference[real].abs().max()
    assert (logits.float()[real] - reference[real]).abs().max() < 0.05 * scale
    recs = half.recommend(tokenizer, make_histories(tokenizer, 4, seed=12, max_len=8), top_k=5, num_beams=10)
    assert all(len(row) == 5 and all(torch.isfinite(torch.tensor(s)) for _, s in row) for row in recs)


def test_inputs_embeds_with_roles_equals_input_ids(make_histories, tokenizer, model) -> None:
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=13))
    ids = batch["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    from_ids = model(**batch).logits
    from_embeds = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], **_roles_of(model, ids)).logits
    assert torch.allclose(from_embeds, from_ids, atol=1e-6)
    with pytest.raises(ValueError, match="inputs_embeds needs behavior_ids and item_position_ids"):
        model(inputs_embeds=embeds, attention_mask=batch["attention_mask"])
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(input_ids=ids, inputs_embeds=embeds)


def test_generate_from_inputs_embeds(make_histories, tokenizer, model) -> None:
    from gamer_hf import GamerConstrainedLogitsProcessor

    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=14))
    ids = batch["input_ids"]
    options = dict(max_new_tokens=tokenizer.num_levels, do_sample=False, num_beams=4, num_return_sequences=4,
                   logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)])
    expected = model.generate(**batch, **options)[:, ids.shape[1]:]
    got = model.generate(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=batch["attention_mask"],
                         **_roles_of(model, ids), **options)
    assert torch.equal(got, expected)


def test_rope_parameters_are_applied(tokenizer, make_histories) -> None:
    default = _lm(tokenizer)
    linear = _lm(tokenizer, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 1_000_000.0})
    assert torch.allclose(linear.model.rotary_emb.inv_freq, default.model.rotary_emb.inv_freq / 4)
    batch = _batch(tokenizer, make_histories(tokenizer, 2, seed=15))
    assert not torch.allclose(linear(**batch).logits, default(**batch).logits)
    dynamic = _lm(tokenizer, max_position_embeddings=16,
                  rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1_000_000.0})
    before = dynamic.model.rotary_emb.inv_freq.clone()
    long = _batch(tokenizer, [[("click", "item1")] * 8])  # 33 tokens, past the 16 positions
    dynamic(**long)
    assert not torch.allclose(dynamic.model.rotary_emb.inv_freq, before)  # frequencies rescaled to the length


def test_shift_labels_and_the_old_cache_name(make_histories, tokenizer, model) -> None:
    batch = tokenizer.encode_histories(make_histories(tokenizer, 2, seed=16), return_tensors="pt")
    labels = batch["input_ids"].masked_fill(~tokenizer.code_token_mask(batch["input_ids"]), -100)
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    assert torch.allclose(model(**batch, shift_labels=shifted).loss, model(**batch, labels=labels).loss)
    assert torch.allclose(model(**batch, labels=labels, shift_labels=shifted).loss, model(**batch, labels=labels).loss)
    with pytest.warns(FutureWarning, match="past_key_values"):
        old = model(**batch, past_key_values=GamerCache(model.config), use_cache=True)
    assert isinstance(old.cache, GamerCache) and old.cache.get_seq_length() == batch["input_ids"].shape[1]


def test_gradient_checkpointing_gives_the_same_gradients(make_histories, tokenizer) -> None:
    batch = tokenizer.encode_histories(make_histories(tokenizer, 4, seed=17), return_tensors="pt")
    labels = batch["input_ids"].masked_fill(~tokenizer.code_token_mask(batch["input_ids"]), -100)
    grads = []
    for checkpointing in (False, True):
        model = _lm(tokenizer, cross_level_layers=[0, 1]).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
            assert all(layer.gradient_checkpointing for layer in model.model.layers)
        model(**batch, labels=labels).loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_resize_token_embeddings_is_refused_before_changing_anything(tmp_path, tokenizer, model, histories) -> None:
    size = model.config.vocab_size
    with pytest.raises(ValueError, match=f"cannot resize GAMER's embeddings to {size + 8}"):
        model.resize_token_embeddings(size + 8)
    with pytest.raises(ValueError, match="fixed by its layout"):
        model.resize_token_embeddings(size, pad_to_multiple_of=64)
    assert model.get_input_embeddings().weight.shape[0] == size and model.lm_head.weight.shape[0] == size
    assert model.resize_token_embeddings(size) is model.get_input_embeddings()
    model.save_pretrained(tmp_path)
    reloaded = GamerForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.recommend(tokenizer, histories, top_k=5) == model.recommend(tokenizer, histories, top_k=5)


@pytest.mark.parametrize("overrides", [{}, {"cross_level_layers": [0, 1]}])
def test_packed_rows_equal_separate_sequences(make_histories, tokenizer, overrides) -> None:
    """Sequences packed in one row (position_ids restarting at 0, as DataCollatorWithFlattening makes them)."""
    from transformers import DataCollatorWithFlattening

    model = _lm(tokenizer, **overrides)
    sequences = [tokenizer.encode_interactions(h) for h in make_histories(tokenizer, 3, seed=18, max_len=5)]
    packed = DataCollatorWithFlattening(return_position_ids=True)(
        [{"input_ids": ids, "labels": ids} for ids in sequences])
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
    start = 0
    for ids in sequences:
        alone = model(input_ids=torch.tensor([ids])).logits[0]
        assert torch.allclose(logits[start : start + len(ids)], alone, atol=1e-5)
        start += len(ids)
    labels = torch.tensor([ids for ids in sequences[0]])[None]
    loss = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], labels=packed["labels"]).loss
    assert torch.isfinite(loss) and labels.numel() > 0


# ----- the cache -----


def _greedy(model, tokenizer, batch, **kwargs):
    from gamer_hf import GamerConstrainedLogitsProcessor

    return model.generate(**batch, max_new_tokens=tokenizer.num_levels, do_sample=False,
                          logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)], **kwargs)


def test_cache_has_one_layer_per_decoder_layer_and_named_parts(make_histories, tokenizer) -> None:
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=19))
    cache = model(**batch, use_cache=True).cache
    assert isinstance(cache, GamerCache) and len(cache.layers) == model.config.num_hidden_layers
    assert len(cache.cross_level_layers) == 2 and cache.get_seq_length() == batch["input_ids"].shape[1]
    roles = GamerTokenRoles.from_input_ids(batch["input_ids"], model.config).behavior_ids
    assert torch.equal(cache.roles.keys[:, 0, :, 0], roles.masked_fill(batch["attention_mask"] == 0, 0))
    with pytest.raises(TypeError, match="GAMER needs a GamerCache"):
        model(**batch, cache=DynamicCache(), use_cache=True)


@pytest.mark.parametrize("overrides", [{}, {"cross_level_layers": [0, 1]}])
def test_static_cache_equals_dynamic(make_histories, tokenizer, overrides) -> None:
    model = _lm(tokenizer, **overrides)
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=20))
    dynamic = _greedy(model, tokenizer, batch, output_scores=True, return_dict_in_generate=True)
    static = _greedy(model, tokenizer, batch, cache_implementation="static", output_scores=True,
                     return_dict_in_generate=True)
    assert torch.equal(static.sequences, dynamic.sequences)
    for a, b in zip(static.scores, dynamic.scores):
        assert torch.allclose(a, b, atol=1e-5)
    beams = dict(num_beams=4, num_return_sequences=4, length_penalty=0.0)
    assert torch.equal(_greedy(model, tokenizer, batch, cache_implementation="static", **beams),
                       _greedy(model, tokenizer, batch, **beams))


@pytest.mark.parametrize("decoding", ["assistant_model", "prompt_lookup_num_tokens"])
def test_assisted_and_prompt_lookup_decoding_equal_greedy(make_histories, tokenizer, decoding) -> None:
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    batch = _batch(tokenizer, make_histories(tokenizer, 1, seed=21))  # candidate decoding runs one row at a time
    extra = {"assistant_model": _lm(tokenizer, num_hidden_layers=1, cross_level_layers=[0], behavior_injection_layers=[0])}
    extra = {decoding: extra["assistant_model"] if decoding == "assistant_model" else 2}
    assert torch.equal(_greedy(model, tokenizer, batch, **extra), _greedy(model, tokenizer, batch))


def _one_layer_lm(tokenizer: GamerTokenizerFast) -> GamerForCausalLM:
    """One layer with every part (self- and cross-level attention, behavior injection, experts): what compile
    tests trace, at half the tiny model's tracing time."""
    return _lm(tokenizer, num_hidden_layers=1, cross_level_layers=[0], behavior_injection_layers=[0])


@pytest.mark.slow
def test_compiled_forward_equals_eager(make_histories, tokenizer) -> None:
    model = _one_layer_lm(tokenizer)
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=22))
    assert type(model)._can_compile_fullgraph  # the expert FFN's grouped matmul has fixed shapes
    compiled = torch.compile(model.forward, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(compiled(**batch, use_cache=False).logits, model(**batch, use_cache=False).logits, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_custom_4d_mask_equals_the_2d_mask(make_histories, tokenizer, dtype) -> None:
    model = _lm(tokenizer, cross_level_layers=[0, 1])
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=23))
    mask = batch["attention_mask"].bool()
    length = mask.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None, None] & mask[:, None, None, :]
    custom = allowed if dtype == torch.bool else torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(dtype).min)
    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    expected = model(**batch).logits
    got = model(input_ids=batch["input_ids"], attention_mask=custom, position_ids=position_ids).logits
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)
    # a 4D mask can narrow what the cross-level layers read: hide every key before the last interaction
    narrow = allowed.clone()
    narrow[..., : length - 5] = False
    narrowed = model(input_ids=batch["input_ids"], attention_mask=narrow, position_ids=position_ids).logits
    assert not torch.allclose(narrowed[:, -1], expected[:, -1], atol=1e-4)


@pytest.mark.slow
def test_compiled_training_step_equals_eager(make_histories, tokenizer) -> None:
    """`torch.compile(model)` of a training step (padded and packed batches of GAMER's collator, cross-level
    layers on) gives the eager loss and gradients. AOTAutograd traces forward and backward as Inductor would;
    Inductor itself is timed in `recipes/bench/speed.py --sections compile`."""
    from gamer_hf.data.collator import GamerCollator

    model = _one_layer_lm(tokenizer).train()
    histories = make_histories(tokenizer, 6, seed=24, max_len=8)
    rows = [{"behaviors": [b for b, _ in h], "items": [i for _, i in h]} for h in histories]
    padded, packed = GamerCollator(tokenizer)(rows), GamerCollator(tokenizer, pack=True)(rows)
    assert "position_ids" in packed and packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    params = [p for p in model.parameters() if p.requires_grad]
    for inputs in (padded, packed):
        results = []
        for forward in (model, compiled):
            loss = forward(**inputs).loss
            results.append((loss, *torch.autograd.grad(loss, params, allow_unused=True)))
        for eager, traced in zip(*results):
            assert (eager is None) == (traced is None)
            assert eager is None or torch.allclose(traced, eager, atol=1e-5)


@pytest.mark.parametrize("cross_level_layers", [[1], [0]])  # the last layer with and without cross-level attention
def test_prefill_of_the_last_position_equals_the_full_forward(make_histories, tokenizer, cross_level_layers) -> None:
    """`logits_to_keep=1` runs the last layer for the last position only: the same next-token logits and the same
    cache as the full forward (padded rows included); recorded hidden states keep every position."""
    model = _lm(tokenizer, cross_level_layers=cross_level_layers)
    batch = _batch(tokenizer, make_histories(tokenizer, 4, seed=25))
    with torch.no_grad():
        full = model(**batch, use_cache=True)
        last = model(**batch, use_cache=True, logits_to_keep=1)
        trimmed = model.model(**batch, last_position_only=True)
        recorded = model.model(**batch, last_position_only=True, output_hidden_states=True)
    assert trimmed.last_hidden_state.shape[1] == 1 and recorded.last_hidden_state.shape == full.logits.shape[:2] + (64,)
    assert torch.allclose(last.logits[:, 0], full.logits[:, -1], atol=1e-5)
    parts = zip([*full.cache.layers, *full.cache.cross_level_layers], [*last.cache.layers, *last.cache.cross_level_layers])
    assert all(torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values) for a, b in parts)


@torch.no_grad()
def test_experts_of_one_route_equal_the_grouped_experts(tokenizer, model, monkeypatch) -> None:
    """A decode step's rows all go to one expert: its plain matmuls give the grouped path's output."""
    mlp = model.model.layers[0].mlp
    hidden = torch.randn(3, 5, mlp.gate_up_proj.shape[1], generator=torch.Generator().manual_seed(0))
    outputs = {}
    for route in (0, 3):
        routes = torch.full((3, 5), route)
        assert type(mlp)._single_route(routes) == route
        outputs[route] = mlp(hidden, routes)
    assert type(mlp)._single_route(torch.tensor([[2, 3]])) is None
    monkeypatch.setattr(type(mlp), "_single_route", staticmethod(lambda routes: None))
    for route, single in outputs.items():
        torch.testing.assert_close(single, mlp(hidden, torch.full((3, 5), route)), rtol=0, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("width", [37, 40, 44])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_experts_of_any_width_equal_one_matmul_per_expert(make_histories, tokenizer, width, dtype) -> None:
    """Expert rows that are not a multiple of 16 bytes (37 floats, 44 bf16 values) crash torch's CPU grouped matmul:
    the experts take the per-expert path there and give what each expert's own matmuls give."""
    model = _lm(tokenizer, intermediate_size=width).to(dtype)
    mlp = model.model.layers[0].mlp
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 9, mlp.gate_up_proj.shape[1], generator=generator).to(dtype)
    routes = torch.randint(0, mlp.num_experts, (2, 9), generator=generator)
    expected = torch.empty(2, 9, mlp.down_proj.shape[-1], dtype=dtype)
    for expert in range(mlp.num_experts):
        rows = routes == expert
        expected[rows] = mlp._swiglu(hidden[rows] @ mlp.gate_up_proj[expert]) @ mlp.down_proj[expert]
    torch.testing.assert_close(mlp(hidden, routes), expected)
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=24))
    assert torch.isfinite(model(**batch).logits.float()).all()


@pytest.mark.slow
def test_compiled_decode_step_on_a_static_cache_equals_eager(make_histories, tokenizer) -> None:
    """A fullgraph-compiled decode step reads the static cache's tensor length, never a Python int of it."""
    model = _one_layer_lm(tokenizer)
    batch = _batch(tokenizer, make_histories(tokenizer, 3, seed=25))

    def decode_step(forward) -> torch.Tensor:
        cache = GamerStaticCache(model.config, max_cache_len=batch["input_ids"].shape[1] + 2)
        with torch.no_grad():
            following = model(**batch, cache=cache).logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([batch["attention_mask"], torch.ones_like(following)], 1)
            return forward(input_ids=following, attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1,
                           cache=cache, use_cache=True).logits

    compiled = torch.compile(model.forward, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(decode_step(compiled), decode_step(model.forward), rtol=0, atol=1e-5)
