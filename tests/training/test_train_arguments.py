"""TrainArguments validation, the Trainer settings derived from them, model set-up and the shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from gamer_hf.cli import parse_command_args
from gamer_hf.data.prepare import load_prepared
from gamer_hf.modeling import GAMER_PRESETS, GamerTokenizerFast
from gamer_hf.recipes import RECIPES_DIR, recipe_names
from gamer_hf.training import ABLATIONS, TrainArguments, training_arguments
from gamer_hf.data import collator
from gamer_hf.training.model_setup import build_model, check_data

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
REQUIRED = dict(data="prepared", output_dir="out")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(tokenizer=None), "tokenizer"),
        (dict(init_from="ckpt", preset="small"), "preset"),
        (dict(init_from="ckpt", ablation="tiger"), "ablation"),
        (dict(warmup_ratio=1.0), "warmup_ratio"),
        (dict(bf16=True, fp16=True), "bf16"),
        (dict(save_steps=10), "eval_steps"),
        (dict(eval_steps=4, save_steps=6), "save_steps"),
        (dict(per_device_train_batch_size=0), "per_device_train_batch_size"),
        (dict(max_history=0), "max_history"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(init_from="ckpt", dropout=0.3), "dropout"),
    ],
)
def test_inconsistent_arguments_are_refused_naming_the_field(overrides, field):
    values = {**REQUIRED, "tokenizer": "tok", **overrides}
    with pytest.raises(ValueError, match=field):
        TrainArguments(**values)


@pytest.mark.parametrize(("given", "expected"), [(True, "true"), (False, None), ("False", None), ("auto", "auto")])
def test_resume_flag_accepts_yaml_booleans(given, expected):
    assert TrainArguments(**REQUIRED, tokenizer="tok", resume_from_checkpoint=given).resume_from_checkpoint == expected


@pytest.mark.parametrize(("eval_steps", "strategy"), [(None, "epoch"), (5, "steps")])
def test_trainer_settings_follow_the_gamer_protocol(tmp_path, eval_steps, strategy):
    args = TrainArguments(**REQUIRED, tokenizer="tok", eval_steps=eval_steps, warmup_ratio=0.04)
    settings = training_arguments(args, tmp_path / "checkpoints")
    assert settings.output_dir == str(tmp_path / "checkpoints")
    assert (settings.eval_strategy, settings.save_strategy) == (strategy, strategy)
    if eval_steps is not None:
        assert settings.eval_steps == settings.save_steps == eval_steps
    assert settings.load_best_model_at_end and settings.metric_for_best_model == "eval_loss"
    assert not settings.greater_is_better and settings.prediction_loss_only
    assert settings.remove_unused_columns is False
    assert settings.optim == "adamw_torch" and settings.lr_scheduler_type == "cosine"
    assert settings.get_warmup_steps(1000) == 40
    assert (settings.learning_rate, settings.weight_decay) == (5e-4, 0.01)


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
@pytest.mark.parametrize("augmented", [False, True])
def test_ablations_switch_gamer_components_off(tokenizer_dir, ablation, augmented):
    tokenizer = GamerTokenizerFast.from_pretrained(tokenizer_dir)
    args = TrainArguments(**REQUIRED, tokenizer=str(tokenizer_dir), preset="tiny", ablation=ablation)
    config = build_model(args, tokenizer, augmented=augmented).config
    expected = {**{key: GAMER_PRESETS["tiny"][key] for key in ("cross_level_layers", "behavior_injection_layers")},
                "use_expert_ffn": True, **ABLATIONS[ablation]}
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.use_augmentation is augmented
    assert config.behavior_names == list(tokenizer.behaviors)


@pytest.mark.parametrize("dropout", [None, 0.0, 0.35])
def test_dropout_sets_every_rate_of_a_new_model(tokenizer_dir, dropout):
    tokenizer = GamerTokenizerFast.from_pretrained(tokenizer_dir)
    arguments = parse_command_args(TrainArguments, ["--data", "d", "--output_dir", "o", "--tokenizer", str(tokenizer_dir),
                                                    "--preset", "small", *(["--dropout", str(dropout)] if dropout is not None else [])])
    model = build_model(arguments, tokenizer, augmented=False)
    expected = GAMER_PRESETS["small"]["hidden_dropout"] if dropout is None else dropout
    rates = {name: getattr(model.config, name) for name in ("hidden_dropout", "attention_dropout", "ffn_dropout")}
    assert rates == dict.fromkeys(rates, expected)
    assert {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)} == {expected}
    assert {module.attention_dropout for module in model.modules() if hasattr(module, "attention_dropout")} == {expected}


@pytest.mark.parametrize("chunk", [None, 2])  # 2: the lookup runs in many slices, as at million-item catalogues
def test_items_without_semantic_ids_are_refused_or_counted(tokenizer_dir, prepared_dir, chunk, monkeypatch):
    if chunk is not None:
        monkeypatch.setattr(collator, "CATALOGUE_CHUNK", chunk)
    prepared = load_prepared(prepared_dir)
    full = GamerTokenizerFast.from_pretrained(tokenizer_dir)
    kept = dict(list(full.item_index.items())[:-3])
    partial = GamerTokenizerFast.from_items(kept, behaviors=full.behaviors, codebook_size=full.codebook_sizes)
    missing = [item for item in prepared.item_ids if item not in kept]
    with pytest.raises(ValueError) as refused:
        check_data(partial, prepared.metadata, prepared.item_ids, "data", on_unknown="raise")
    assert f"{len(missing)} of {len(prepared.item_ids)} items" in str(refused.value)
    assert f"(first: {missing[:5]})" in str(refused.value)
    assert check_data(partial, prepared.metadata, prepared.item_ids, "data", on_unknown="skip") == len(missing)
    rows = collator.catalogue_rows(partial, prepared.item_ids)  # the collator's, handed over: the same verdict
    assert check_data(partial, prepared.metadata, prepared.item_ids, "data", "skip", rows) == len(missing)
    assert [item for item, row in zip(prepared.item_ids, rows) if row >= 0] == [i for i in prepared.item_ids if i in kept]


def test_behaviors_with_other_levels_are_refused(tokenizer_dir, prepared_dir):
    prepared = load_prepared(prepared_dir)
    full = GamerTokenizerFast.from_pretrained(tokenizer_dir)
    flat = GamerTokenizerFast.from_items(full.item_index, behaviors={"click": 0, "cart": 0, "buy": 1},
                                         codebook_size=full.codebook_sizes)
    with pytest.raises(ValueError, match="'cart'"):
        check_data(flat, prepared.metadata, prepared.item_ids, "data", on_unknown="raise")


FOLDERS = ["--data", "data", "--tokenizer", "tokenizer", "--output_dir", "gamer"]


@pytest.mark.parametrize("name", recipe_names())
def test_training_recipes_parse_as_train_arguments(name):
    recipe = RECIPES_DIR / f"{name}.yaml"
    assert recipe.read_text().startswith("#")  # each recipe says which folders it expects
    settings = yaml.safe_load(recipe.read_text())
    assert not {"data", "tokenizer", "output_dir"} & set(settings)  # folders come from the command line
    args = parse_command_args(TrainArguments, ["--config", name, *FOLDERS])
    assert {key: getattr(args, key) for key in settings} == settings
    assert (args.data, args.tokenizer, args.output_dir) == ("data", "tokenizer", "gamer")


def test_paper_reference_recipe_matches_the_paper():
    args = parse_command_args(TrainArguments, ["--config", "paper_reference", *FOLDERS])
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 4096
    assert (args.preset, args.learning_rate, args.warmup_ratio, args.lr_scheduler_type) == ("base", 5e-4, 0.04, "cosine")
    assert (args.num_train_epochs, args.early_stopping_patience, args.max_history) == (200, 20, 100)


@pytest.mark.parametrize(
    ("name", "distributed_type", "mixed_precision"),
    [
        ("cpu_2proc", "MULTI_GPU", "no"),  # torchrun launcher; train() switches the processes to CPU DDP
        ("gpu_1_bf16", "NO", "bf16"),
        ("multi_gpu", "MULTI_GPU", "bf16"),
        ("multi_node", "MULTI_GPU", "bf16"),
        ("deepspeed_zero2", "DEEPSPEED", "bf16"),
        ("fsdp", "FSDP", "bf16"),
    ],
)
def test_accelerate_configs_load(name, distributed_type, mixed_precision):
    path = RECIPES / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    assert (str(config.distributed_type).split(".")[-1], config.mixed_precision) == (distributed_type, mixed_precision)
    assert config.use_cpu is (name == "cpu_2proc")
    assert path.read_text().startswith("#")
    assert {p.stem for p in path.parent.glob("*.yaml")} == {"cpu_2proc", "gpu_1_bf16", "multi_gpu", "multi_node",
                                                             "deepspeed_zero2", "fsdp"}
