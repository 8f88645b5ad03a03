from __future__ import annotations

import pytest
import torch

from gamer_hf import GamerConfig, GamerConstrainedLogitsProcessor, GamerForCausalLM, GamerTokenizerFast, ItemTrie
from gamer_hf.modeling import modeling_gamer
from gamer_hf.modeling.generation_gamer import make_prefix_allowed_tokens_fn

BEHAVIORS = {"click": 0, "cart": 1, "buy": 2}


def _generate(model, tok, histories, behavior, num_beams, num_return, **kwargs):
    batch = tok.encode_histories(histories, behavior=behavior, return_tensors="pt")
    out = model.generate(
        **batch, max_new_tokens=tok.num_levels, do_sample=False, num_beams=num_beams,
        num_return_sequences=num_return, length_penalty=0.0, output_scores=True, return_dict_in_generate=True,
        **kwargs,
    )
    codes = out.sequences[:, batch["input_ids"].shape[1] :]
    return codes, out.sequences_scores


@pytest.mark.parametrize("seed", range(4))
def test_trie_allows_exactly_the_index(make_catalogue, seed: int) -> None:
    sizes = (3, 4, 5)
    index = make_catalogue(25, sizes, seed=seed)
    trie = ItemTrie(torch.tensor(list(index.values())), sizes)
    root = torch.zeros(1, dtype=torch.long)
    assert trie.allowed(root, 0)[0].tolist() == [any(c[0] == a for c in index.values()) for a in range(3)]
    for codes in index.values():
        node = root
        for depth, code in enumerate(codes):
            assert trie.allowed(node, depth)[0, code]
            node = trie.step(node, depth, torch.tensor([code]))
        assert list(index)[trie.leaf_to_item[node].item()] == list(index)[list(index.values()).index(codes)]
    dead = trie.step(root, 0, torch.tensor([3]))  # code outside the level's codebook
    assert dead.item() == -1 and not trie.allowed(dead, 1).any()
    nodes = root
    for depth, size in enumerate(sizes):  # children of a batch of nodes (repeated, dead): each step()'s child, in order
        nodes = torch.cat([nodes, nodes[:1], torch.tensor([-1])])
        rows, codes, child = trie.children(nodes, depth)
        expected = [(row, code) for row in range(len(nodes)) for code in range(size)
                    if trie.step(nodes[row : row + 1], depth, torch.tensor([code])).item() >= 0]
        assert list(zip(rows.tolist(), codes.tolist())) == expected
        assert torch.equal(child, trie.step(nodes[rows], depth, codes))
        nodes = child


@pytest.mark.parametrize(("num_items", "sizes", "seed"), [(7, (2, 3, 4), 0), (12, (2, 2, 8), 1), (30, (3, 4, 4), 2)])
def test_generate_never_leaves_the_index(make_catalogue, make_histories, num_items, sizes, seed) -> None:
    """Few valid continuations per prefix, more beams than items at the first level."""
    tok = GamerTokenizerFast.from_items(make_catalogue(num_items, sizes, seed), behaviors=BEHAVIORS, codebook_size=list(sizes))
    torch.manual_seed(seed)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tok)).eval()
    histories = make_histories(tok, 3, seed=seed)
    num_return = min(num_items, 6)
    codes, scores = _generate(model, tok, histories, "buy", num_beams=10, num_return=num_return,
                              logits_processor=[GamerConstrainedLogitsProcessor(tok)])
    finite = torch.isfinite(scores)
    assert finite.all(), "every returned sequence must be a real, scored item"
    assert None not in tok.decode_items(codes)
    recs = model.recommend(tok, histories, behavior="buy", top_k=num_return, num_beams=10)
    for row, generated in zip(recs, codes.view(len(histories), num_return, -1)):
        assert len(row) == num_return
        assert [item for item, _ in row] == tok.decode_items(generated)


@pytest.mark.parametrize("behavior", ["click", "buy", ["cart", "buy", "click", "buy", "cart"]])
def test_recommend_equals_generate(tokenizer, model, histories, behavior) -> None:
    recs = model.recommend(tokenizer, histories, behavior=behavior, top_k=20, num_beams=20)
    codes, scores = _generate(model, tokenizer, histories, behavior, num_beams=20, num_return=20,
                              logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)])
    items = tokenizer.decode_items(codes)
    for b, row in enumerate(recs):
        assert [item for item, _ in row] == items[b * 20 : (b + 1) * 20]
        assert torch.allclose(torch.tensor([s for _, s in row]), scores[b * 20 : (b + 1) * 20], atol=1e-5)
        assert all(x >= y for (_, x), (_, y) in zip(row, row[1:]))



def test_recommend_runs_in_eval_mode_and_restores_the_mode(tokenizer, model, histories) -> None:
    """A model in training mode (with dropout) recommends as in eval mode and is in training mode again after; one
    in eval mode throughout stays so, and one training with some modules frozen in eval gets that mix back."""
    expected = model.recommend(tokenizer, histories, behavior="buy", top_k=5, num_beams=8)
    assert not any(module.training for module in model.modules())
    trained = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, hidden_dropout=0.5))
    trained.load_state_dict(model.state_dict())
    assert trained.train().recommend(tokenizer, histories, behavior="buy", top_k=5, num_beams=8) == expected
    assert all(module.training for module in trained.modules())
    trained.model.layers[0].eval()  # fine-tuning with the first layer frozen
    modes = [module.training for module in trained.modules()]
    assert trained.recommend(tokenizer, histories, behavior="buy", top_k=5, num_beams=8) == expected
    assert [module.training for module in trained.modules()] == modes and not all(modes)

@pytest.mark.parametrize(
    "overrides",
    [dict(cross_level_layers=[], behavior_injection_layers=[], use_expert_ffn=False), dict(cross_level_layers=[0, 1])],
)
def test_recommend_equals_generate_for_ablations(tokenizer, histories, overrides) -> None:
    torch.manual_seed(1)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, **overrides)).eval()
    recs = model.recommend(tokenizer, histories, behavior="cart", top_k=20, num_beams=20)
    codes, scores = _generate(model, tokenizer, histories, "cart", num_beams=20, num_return=20,
                              logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)])
    assert [item for row in recs for item, _ in row] == tokenizer.decode_items(codes)
    assert torch.allclose(torch.tensor([s for row in recs for _, s in row]), scores, atol=1e-5)


def test_masked_decode_reads_the_grouped_heads_in_place(tokenizer, model, histories, monkeypatch) -> None:
    """The beam decode's masked attention skips Transformers' per-head K/V copy and gives the same lists and
    scores as Transformers' own sdpa path (to the bit on AVX2 CPUs; within float rounding where the two calls
    take different AVX-512 kernels)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    grouped, heads = modeling_gamer.sdpa_grouped_attention_forward, []

    def spy(module, query, key, *args, **kwargs):
        heads.append((query.shape[1], key.shape[1]))
        return grouped(module, query, key, *args, **kwargs)

    monkeypatch.setattr(modeling_gamer, "sdpa_grouped_attention_forward", spy)
    fast = model.recommend(tokenizer, histories, top_k=20, num_beams=20)
    assert heads and all(kv < q for q, kv in heads)  # every masked call got the grouped K/V as cached
    monkeypatch.setattr(modeling_gamer, "sdpa_grouped_attention_forward", sdpa_attention_forward)
    copied = model.recommend(tokenizer, histories, top_k=20, num_beams=20)
    assert [[item for item, _ in row] for row in copied] == [[item for item, _ in row] for row in fast]
    assert [s for row in copied for _, s in row] == pytest.approx([s for row in fast for _, s in row], abs=1e-5)


def test_prefix_function_baseline_gives_the_same_ranking(tokenizer, model, histories) -> None:
    codes_fn, scores_fn = _generate(model, tokenizer, histories, "buy", num_beams=20, num_return=20,
                                    prefix_allowed_tokens_fn=make_prefix_allowed_tokens_fn(tokenizer))
    codes, scores = _generate(model, tokenizer, histories, "buy", num_beams=20, num_return=20,
                              logits_processor=[GamerConstrainedLogitsProcessor(tokenizer)])
    assert torch.equal(codes_fn, codes)
    assert torch.allclose(scores_fn, scores, atol=1e-5)


def test_exclude_history(tokenizer, model, histories) -> None:
    plain = model.recommend(tokenizer, histories, top_k=20, num_beams=40)
    excluded = model.recommend(tokenizer, histories, top_k=10, num_beams=40, exclude_history=True)
    for history, full, row in zip(histories, plain, excluded):
        seen = {item for _, item in history}
        assert not seen & {item for item, _ in row}
        assert [item for item, _ in row] == [item for item, _ in full if item not in seen][:10]


def test_exclude_items(tokenizer, model, histories) -> None:
    plain = model.recommend(tokenizer, histories, top_k=20, num_beams=40)
    dropped = [{item for item, _ in row[:3]} | {"not-an-item"} for row in plain]
    excluded = model.recommend(tokenizer, histories, top_k=10, num_beams=40, exclude_items=dropped)
    for full, row, gone in zip(plain, excluded, dropped):
        assert [item for item, _ in row] == [item for item, _ in full if item not in gone][:10]
    both = model.recommend(tokenizer, histories, top_k=10, num_beams=40, exclude_history=True, exclude_items=dropped)
    for history, row, gone in zip(histories, both, dropped):
        assert not ({item for _, item in history} | gone) & {item for item, _ in row}
    with pytest.raises(ValueError, match="exclude_items"):
        model.recommend(tokenizer, histories, exclude_items=dropped[:1])


def test_top_k_needs_beams(tokenizer, model, histories) -> None:
    with pytest.raises(ValueError, match="num_beams"):
        model.recommend(tokenizer, histories, top_k=30, num_beams=20)


def _teacher_forced(model, tok, history, behavior, item) -> float:
    """Summed log-probability of the item's codes from one unbatched forward over prompt + codes."""
    prompt = tok.encode_histories([history], behavior=behavior, return_tensors="pt")["input_ids"]
    codes = torch.tensor([[o + c for o, c in zip(tok.code_token_offsets, tok.item_index[item])]])
    logits = model(input_ids=torch.cat([prompt, codes], dim=1)).logits[0, prompt.shape[1] - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, codes[0, :, None]).sum().item()


@pytest.mark.parametrize(
    "overrides", [{}, dict(cross_level_layers=[], behavior_injection_layers=[], use_expert_ffn=False)]
)
def test_score_items_is_the_teacher_forced_log_probability(tokenizer, histories, overrides) -> None:
    torch.manual_seed(2)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, **overrides)).eval()
    items = list(tokenizer.item_index)
    candidates = [items[b : b + 1 + 2 * b] for b in range(len(histories))]  # ragged widths share one batch
    behaviors = ["buy", "cart", "click", "buy", "cart"]
    scores = model.score_items(tokenizer, histories, candidates, behavior=behaviors, batch_size=3)
    for history, behavior, row, scored in zip(histories, behaviors, candidates, scores):
        expected = [_teacher_forced(model, tokenizer, history, behavior, item) for item in row]
        assert scored == pytest.approx(expected, abs=1e-4)


def test_score_items_agrees_with_recommend(tokenizer, model, histories) -> None:
    recs = model.recommend(tokenizer, histories, behavior="cart", top_k=20, num_beams=20)
    shuffled = [[item for item, _ in row][::-1] for row in recs]
    scores = model.score_items(tokenizer, histories, shuffled, behavior="cart")
    for row, items, scored in zip(recs, shuffled, scores):
        assert dict(zip(items, scored)) == pytest.approx(dict(row), abs=1e-4)


def test_score_items_unknown_and_empty(tokenizer, model, histories) -> None:
    known = list(tokenizer.item_index)[:2]
    with pytest.raises(ValueError, match="'nope' is not in the tokenizer's item index"):
        model.score_items(tokenizer, histories[:2], [known, ["nope"]])
    repeated = [histories[0], histories[1], histories[0]]
    scores = model.score_items(tokenizer, repeated, [known + ["nope"], [], known], on_unknown="skip")
    assert scores[0][2] == float("-inf") and scores[1] == [] and scores[0][:2] == pytest.approx(scores[2])
    with pytest.raises(ValueError, match="2 candidate lists for 3 histories"):
        model.score_items(tokenizer, histories[:3], [known, known])


def test_score_items_looks_the_candidates_up_at_once(tokenizer, model, histories, monkeypatch) -> None:
    """One vectorized `ItemIndex.rows` call per batch, no bisect per candidate (millions of items)."""
    known = list(tokenizer.item_index)[:3]
    candidates = [known + ["nope"], known[:1]]
    expected = model.score_items(tokenizer, histories[:2], candidates, on_unknown="skip")

    def per_item(*_):
        raise AssertionError("a candidate was looked up on its own")

    monkeypatch.setattr(type(tokenizer.item_index), "row", per_item)
    assert model.score_items(tokenizer, histories[:2], candidates, on_unknown="skip") == expected
    assert expected[0][3] == float("-inf") and len(expected[1]) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(top_k=-3), "top_k must be an int >= 1, got -3"),
        (dict(top_k=0, num_beams=0), "top_k must be an int >= 1, got 0"),
        (dict(top_k=2, num_beams=0), "num_beams must be an int >= 1, got 0"),
        (dict(top_k=2.5), "top_k must be an int >= 1, got 2.5"),
        (dict(top_k=True), "top_k must be an int >= 1, got True"),
        (dict(max_history=0), "max_history must be an int >= 1, got 0"),
        (dict(max_history=-1), "max_history must be an int >= 1, got -1"),
        (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
    ],
)
def test_recommend_refuses_bad_arguments(tokenizer, model, histories, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        model.recommend(tokenizer, histories, **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [(dict(max_history=0), "max_history"), (dict(batch_size=-1), "batch_size")])
def test_score_items_refuses_bad_arguments(tokenizer, model, histories, kwargs, message) -> None:
    items = [list(tokenizer.item_index)[:2]] * len(histories)
    with pytest.raises(ValueError, match=f"{message} must be an int >= 1"):
        model.score_items(tokenizer, histories, items, **kwargs)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("click", None), r"history 1, entry 2: item id None \(NoneType\) is not valid: a missing id"),
        (("cart", 3.0), r"history 1, entry 2: item id 3.0 \(float\) is not valid: a float id"),
        (None, r"history 1, entry 2: expected a \(behavior, item_id\) pair, got None"),
        ("click", r"history 1, entry 2: expected a \(behavior, item_id\) pair, got 'click'"),
        ((None, "item1"), r"history 1, entry 2: behavior must be a string, got None"),
    ],
)
def test_malformed_history_entries_name_their_position(tokenizer, model, histories, bad, message) -> None:
    broken = [list(histories[0]), [("click", "item1"), ("buy", "item2"), bad]]
    with pytest.raises(ValueError, match=message):
        model.recommend(tokenizer, broken, top_k=2, num_beams=2)
    with pytest.raises(ValueError, match=message):
        model.score_items(tokenizer, broken, [["item1"], ["item2"]])


def test_max_history_defaults_to_the_trained_length(tokenizer, histories) -> None:
    torch.manual_seed(0)
    model = GamerForCausalLM(GamerConfig.from_preset("tiny", tokenizer=tokenizer, max_history=2)).eval()
    long = [h * 3 for h in histories]
    default = model.recommend(tokenizer, long, top_k=5, num_beams=8)
    cut = model.recommend(tokenizer, [h[-2:] for h in long], top_k=5, num_beams=8)
    assert default == cut
    assert model.recommend(tokenizer, long, top_k=5, num_beams=8, max_history=100) != default
    assert model.score_items(tokenizer, long, [["item1"]] * len(long)) == \
        model.score_items(tokenizer, [h[-2:] for h in long], [["item1"]] * len(long))


@pytest.fixture
def generation_log():
    """Warnings of generation_gamer's logger, whatever verbosity or propagation other tests left set."""
    from transformers.testing_utils import CaptureLogger

    from gamer_hf.modeling import generation_gamer

    level = generation_gamer.logger.level
    generation_gamer.logger.setLevel("WARNING")
    try:
        with CaptureLogger(generation_gamer.logger) as captured:
            yield captured
    finally:
        generation_gamer.logger.setLevel(level)


def test_histories_past_the_positions_are_cut_with_a_note(tokenizer, histories, generation_log) -> None:
    torch.manual_seed(0)
    config = GamerConfig.from_preset("tiny", tokenizer=tokenizer, max_position_embeddings=24)
    model = GamerForCausalLM(config).eval()
    assert config.max_prompt_interactions == 5  # 5 interactions * 4 tokens + behavior token + 3 codes = 24
    long = [h * 4 for h in histories]
    recs = model.recommend(tokenizer, long, top_k=5, num_beams=8, max_history=50)
    note = generation_log.io.getvalue()  # `.out` is filled only when the capture ends
    assert "cut to their last 5 interactions" in note and "max_position_embeddings=24" in note
    assert recs == model.recommend(tokenizer, [h[-5:] for h in long], top_k=5, num_beams=8)


def test_config_refuses_positions_shorter_than_the_trained_prompts(tokenizer) -> None:
    with pytest.raises(ValueError, match="max_position_embeddings=20 is smaller than the trained prompts"):
        GamerConfig.from_preset("tiny", tokenizer=tokenizer, max_history=5, max_position_embeddings=20)
    with pytest.raises(ValueError, match="max_history must be None or an int >= 1"):
        GamerConfig.from_preset("tiny", tokenizer=tokenizer, max_history=0)
