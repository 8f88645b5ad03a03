from __future__ import annotations

import pytest

from gamer_hf import GAMER_PRESETS, GamerConfig, GamerForCausalLM, GamerTokenizerFast


def test_base_preset_matches_paper_size() -> None:
    tok = GamerTokenizerFast.from_items({"a": (0, 0, 0, 0)}, behaviors={"click": 0, "cart": 1, "buy": 2}, codebook_size=256)
    model = GamerForCausalLM(GamerConfig.from_preset("base", tokenizer=tok))
    params = sum(p.numel() for p in model.parameters())
    assert 23.5e6 < params < 25.5e6, params  # DESIGN.md: about 24.5M


@pytest.mark.parametrize("name", sorted(GAMER_PRESETS))
def test_presets_take_tokenizer_layout(name: str, tokenizer: GamerTokenizerFast) -> None:
    config = GamerConfig.from_preset(name, tokenizer=tokenizer)
    assert config.vocab_size == len(tokenizer)
    assert config.behavior_names == list(tokenizer.behaviors)
    assert config.code_token_offsets == tokenizer.code_token_offsets


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(behavior_levels=[0, 1]), "behavior_levels"),
        (dict(behavior_levels=[0, 2, 2]), "behavior_levels"),
        (dict(cross_level_layers=[5]), "cross_level_layers"),
        (dict(behavior_injection_layers=[-1]), "behavior_injection_layers"),
        (dict(num_key_value_heads=3), "num_attention_heads"),
        (dict(vocab_size=7), "vocab_size"),
        (dict(training_temperature=0.0), "training_temperature"),
        (dict(hidden_dropout=1.5), "hidden_dropout"),
    ],
)
def test_inconsistent_values_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GamerConfig.from_preset("tiny", **overrides)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        GamerConfig.from_preset("huge")
