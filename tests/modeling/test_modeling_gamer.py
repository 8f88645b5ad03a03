from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, DynamicCache

from gamer_hf import GamerConfig, GamerForCausalLM, GamerModel, GamerTokenizerFast
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
    level_mask, has_key = model.model._level_mask(roles, None, None, positions)
    rope = model.model.rotary_emb(torch.zeros(1), positions)
    levels = model.model.level_table[roles.behavior_ids][0]
    torch.manual_seed(1)
    hidden = torch.randn(1, ids.shape[1], model.config.hidden_size)
    base = layer(hidden, rope, level_mask, has_key, roles.behavior_ids)
    n = ids.shape[1]
    readable = (torch.arange(n)[None, :] <= torch.arange(n)[:, None]) & (levels[None, :] < levels[:, None])
    silent = ~readable.any(-1)  # lowest-level tokens, and the leading buy that has nothing lower before it
    assert silent[levels == levels.min()].all() and silent[:4].all()
    assert torch.equal(base[0, silent], torch.zeros_like(base[0, silent]))
    assert (base[0, ~silent].abs().sum(-1) > 0).all()
    for j in range(ids.shape[1]):
        bumped = hidden.clone()
        bumped[0, j] += torch.randn(model.config.hidden_size)
        changed = (layer(bumped, rope, level_mask, has_key, roles.behavior_ids) - base).abs().amax(-1)[0] > 1e-6
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
    cache = DynamicCache()
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
    for name in ("configuration_gamer.py", "modeling_gamer.py", "tokenization_gamer.py", "generation_gamer.py"):
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
