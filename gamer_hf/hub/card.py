"""The model card of a GAMER repo, rendered from `hub_cards/gamer_model_card.md`.

Every number on the card is read from the model, its tokenizer, `gamer_training.json` and
`eval_results.json`; a fact none of them records is printed as "not recorded", never guessed.
Formatting (rounding, table cells) happens here so that the template only lays facts out.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data.diagnostics import DataReport
from ..evaluation.cases import ordered_behaviors
from ..evaluation.metrics import MERGED, METRIC_NAMES, metric_key
from ..evaluation.results import ALL_CASES, EvaluationReport
from ..evaluation.slices import SLICES

__all__ = ["CARD_TAGS", "NOT_RECORDED", "TEMPLATE_NAME", "build_model_card", "card_data", "load_template"]

TEMPLATE_NAME = "gamer_model_card.md"
NOT_RECORDED = "not recorded"
# `library_name: transformers` keeps the Hub's "Use this model" snippet and download counting on the
# Transformers path the repo really loads through; "gamer" and the task tags make it findable.
CARD_TAGS = ["recommendation", "generative-recommendation", "semantic-ids", "multi-behavior", "gamer"]
# There is no Hub pipeline tag for recommendation. "other" is a valid tag and stops the Hub from
# inferring "text-generation" from GamerForCausalLM, whose inference widget could not run this model.
PIPELINE_TAG = "other"
TASK_TYPE = "recommendation"
MODEL_RESULT = "GAMER"  # the plain model's row in eval_results.json; other rows are variants and baselines
BASELINES = ("MostPopular", "Repeat", "Repeat+learned")
PUBLIC_FORMATS = {"retailrocket": "RetailRocket", "taobao": "Taobao UserBehavior", "tmall": "Tmall (IJCAI-15)"}


def load_template(name: str = TEMPLATE_NAME) -> str:
    """The template as installed (package `gamer_hf.hub_cards`), else from a source checkout's `hub_cards/`."""
    try:
        return importlib.resources.files("gamer_hf.hub_cards").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parents[2] / "hub_cards" / name).read_text(encoding="utf-8")


# ----- formatting -----
def _text(value: Any, spec: str = "") -> str:
    """A fact as card text (`spec` formats a recorded value): NOT_RECORDED for None, '|' escaped so
    that a value cannot break a table."""
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not spec:
        spec = ","
    text = format(value, spec) if spec else str(value)
    return text.replace("|", "\\|")


def _get(mapping: dict[str, Any] | None, *keys: str) -> Any:
    """mapping[k1][k2]..., or None where any level is missing."""
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


# ----- facts -----
def dataset_name(training: dict[str, Any] | None, evaluation: dict[str, Any] | None) -> str | None:
    """A readable name of the data: the public format, else the file or folder the run recorded."""
    data = _get(training, "data") or {}
    if data.get("format") in PUBLIC_FORMATS:
        return PUBLIC_FORMATS[data["format"]]
    source = data.get("source")
    if source and not str(source).startswith("<"):  # "<DataFrame>": an in-memory table has no name
        return Path(str(source)).name
    folder = data.get("path") or _get(evaluation, "metadata", "data")
    return Path(str(folder)).name if folder else None


def _behavior_rows(tokenizer: Any, training: dict[str, Any] | None) -> list[list[str]]:
    recorded = {row.get("name"): row for row in _get(training, "behaviors") or [] if isinstance(row, dict)}
    target = tokenizer.target_behavior
    return [
        [_text(name), str(identity), str(level), "yes" if name == target else "",
         _text(recorded.get(name, {}).get("events"))]
        for identity, (name, level) in enumerate(tokenizer.behaviors.items(), start=1)
    ]


def _semantic_id_facts(tokenizer: Any, training: dict[str, Any] | None) -> dict[str, Any]:
    recorded = _get(training, "semantic_ids") or {}
    report = recorded.get("report") or {}
    levels = report.get("levels")
    source = "semantic-ID report"
    if not levels:  # no report: usage measured on the item index this repo ships
        from ..semantic_ids.report import level_stats  # here: the semantic_ids package imports scikit-learn

        codes = tokenizer.item_code_tensor.numpy().astype(np.int64)
        levels = [vars(stats) for stats in level_stats(codes, tokenizer.codebook_sizes, tokenizer.num_levels)]
        source = "item index"
    return {
        "method": _text(recorded.get("method") or report.get("method")),
        "parameters": _text(", ".join(f"{k}={v}" for k, v in recorded["parameters"].items() if k != "method")
                            if isinstance(recorded.get("parameters"), dict) else None),
        "num_items": _text(len(tokenizer.item_index)),
        "num_levels": str(tokenizer.num_levels),
        "codebook_sizes": " x ".join(str(size) for size in tokenizer.codebook_sizes),
        "collision_rate": _text(report.get("collision_rate"), ".2%"),
        "colliding_items": _text(report.get("colliding_items")),
        "collision_handling": _text(report.get("collision_handling")),
        "collision_rate_after": _text(report.get("collision_rate_after"), ".2%"),
        "levels_source": source,
        "levels": [
            [f"{row['level']}{' (disambiguation)' if row.get('disambiguation') else ''}", _text(row["codebook_size"]),
             _text(row["codes_used"]), _text(row["usage"], ".1%"), _text(row["normalized_entropy"], ".3f")]
            for row in levels
        ],
    }


def _data_report(evaluation: dict[str, Any] | None) -> DataReport | None:
    """The data report `evaluate` recorded beside its results (None before it recorded one)."""
    recorded = _get(evaluation, "metadata", "data_report")
    return DataReport.from_dict(recorded) if isinstance(recorded, dict) else None


def _data_report_rows(report: DataReport | None) -> list[list[str]]:
    if report is None:
        return [["Users with training history", NOT_RECORDED], ["Test targets in the prompt", NOT_RECORDED]]
    repeats = "; ".join(f"{name}: last item {share.share(share.last_item):.0%}, anywhere "
                        f"{share.share(share.in_prompt):.0%} of {share.cases:,}" for name, share in report.repeats.items())
    return [["Users with training history", f"{report.training_users:,} of {report.users:,}"],
            ["Test targets in the prompt", _text(repeats or None)]]


def _data_warnings(evaluation: dict[str, Any] | None) -> list[str]:
    report = _data_report(evaluation)
    return [] if report is None else [warning.message for warning in report.warnings]


def _data_rows(training: dict[str, Any] | None, evaluation: dict[str, Any] | None) -> list[list[str]]:
    data = _get(training, "data") or {}
    events = data.get("events_per_behavior")
    splits = data.get("splits") or {}
    return [
        ["Dataset", _text(dataset_name(training, evaluation))],
        ["Format", _text(data.get("format"))],
        ["Split protocol", _text(data.get("protocol"))],
        ["Users", _text(data.get("num_users"))],
        ["Items", _text(data.get("num_items"))],
        ["Events", _text(data.get("num_events"))],
        ["Events per behavior", _text(", ".join(f"{b} {n:,}" for b, n in events.items()) if events else None)],
        ["Sessions", _text(data.get("num_sessions"))],
        ["Training sequences", _text(_get(splits, "train", "rows"))],
        ["Augmented copies per sequence", _text(data.get("augment_copies"))],
        ["Validation cases", _text(_get(splits, "validation", "cases"))],
        ["Test cases", _text(_get(splits, "test", "cases"))],
        *_data_report_rows(_data_report(evaluation)),
    ]


def _model_rows(model: Any, training: dict[str, Any] | None) -> list[list[str]]:
    config = model.config
    recorded = _get(training, "model") or {}
    return [
        ["Parameters", _text(model.num_parameters())],
        ["Size preset", _text(recorded.get("preset"))],
        ["Ablation", _text(recorded.get("ablation"))],
        ["Layers / hidden size / heads (KV heads)",
         f"{config.num_hidden_layers} / {config.hidden_size} / {config.num_attention_heads} "
         f"({config.num_key_value_heads})"],
        ["Cross-level interaction layers", _text(list(config.cross_level_layers))],
        ["Behavior-injection layers", _text(list(config.behavior_injection_layers))],
        ["Position-routed expert FFN", _text(config.use_expert_ffn)],
        ["Trained on augmented sequences", _text(config.use_augmentation)],
    ]


def _precision(arguments: dict[str, Any]) -> str | None:
    if not arguments:
        return None
    return "bf16" if arguments.get("bf16") else "fp16" if arguments.get("fp16") else "fp32"


def _training_rows(training: dict[str, Any] | None) -> list[list[str]]:
    arguments = _get(training, "training_arguments") or {}
    results = _get(training, "results") or {}
    versions = _get(training, "versions")
    max_history = arguments.get("max_history") or _get(training, "data", "max_history")
    batch = (f"{training['global_batch_size']:,} (per device {arguments.get('per_device_train_batch_size')} x "
             f"accumulation {arguments.get('gradient_accumulation_steps')} x {training.get('world_size')} processes)"
             if training and training.get("global_batch_size") is not None else None)
    best = results.get("best_eval_loss")
    return [
        ["Epochs (configured)", _text(arguments.get("num_train_epochs"))],
        ["Optimizer steps", _text(results.get("global_step"))],
        ["Epochs completed", _text(results.get("epoch"), ".2f")],
        ["Stopped early", _text(results.get("stopped_early"))],
        ["Global batch size", _text(batch)],
        ["Learning rate", _text(arguments.get("learning_rate"), "g")],
        ["Schedule", _text(f"{arguments['lr_scheduler_type']}, warm-up ratio {arguments.get('warmup_ratio')}"
                           if arguments.get("lr_scheduler_type") else None)],
        ["Weight decay", _text(arguments.get("weight_decay"))],
        ["Early-stopping patience", _text(arguments.get("early_stopping_patience"))],
        ["Max history (interactions)", _text(max_history)],
        ["Precision", _text(_precision(arguments))],
        ["Seed", _text(arguments.get("seed"))],
        ["Best validation loss", _text(f"{best:.4f} (step {results.get('best_global_step')})"
                                       if best is not None else None)],
        ["Final validation loss", _text(results.get("final_eval_loss"), ".4f")],
        ["Software", _text(", ".join(f"{k} {v}" for k, v in versions.items()) if versions else None)],
    ]


def _headline_k(report: EvaluationReport) -> int:
    return 10 if 10 in report.k_values else max(report.k_values)


def _evaluation_facts(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    report = EvaluationReport.from_dict(evaluation)
    k = _headline_k(report)
    keys = [metric_key("HR", k), metric_key("NDCG", k)]
    behaviors = [*ordered_behaviors(report.behaviors), MERGED]
    models = [result.name for result in report.results]

    def value(result_name: str, behavior: str, key: str) -> float | None:
        result = report[result_name]
        row = result.merged if behavior == MERGED else result.metrics.get(behavior)
        return None if row is None else row.get(key)

    rows = []
    for behavior in behaviors:
        label = f"{behavior} (target)" if behavior == report.target_behavior else behavior
        values = [value(name, behavior, key) for name in models for key in keys]
        rows.append([_text(label), *("-" if v is None else _text(v, ".4f") for v in values)])  # "-": no cases
    headers = [f"{name} {metric}@{k}" for name in models for metric in ("HR", "NDCG")]
    ndcg = metric_key("NDCG", k)
    beaten = []  # behaviors where a rule baseline ranks better than the plain model: say so on the card
    for behavior in behaviors if MODEL_RESULT in models else []:
        ours = value(MODEL_RESULT, behavior, ndcg)
        better = [name for name in BASELINES
                  if name in models and ours is not None and (value(name, behavior, ndcg) or 0.0) > ours]
        if better:
            beaten.append(f"{behavior} ({', '.join(better)})")
    metadata = report.metadata
    return {
        **_slice_facts(report, ndcg),
        "k": k,
        "headers": headers,
        "rows": rows,
        "full_table": report.to_markdown(),
        "split": _text(metadata.get("split")),
        "cases": _text(metadata.get("cases")),
        "num_beams": _text(metadata.get("num_beams")),
        "max_history": _text(metadata.get("max_history")),
        "beaten": beaten,
    }


def _slice_facts(report: EvaluationReport, key: str) -> dict[str, Any]:
    """Target-behavior `key` per repeat / explore / cold slice (with case counts), and each model's
    paired-bootstrap difference to the best baseline on all target cases and per slice."""
    target = report.target_behavior
    names = [name for name in SLICES if any(name in r.slices for r in report.results)]
    slice_rows = []
    for result in report.results if names else []:
        cells = []
        for name in names:
            cases = result.slice_cases.get(name, {}).get(target, 0)
            cells.append(f"{_text(result.slices[name][target][key], '.4f')} ({cases:,})" if cases else "- (0)")
        slice_rows.append([_text(result.name), *cells])
    compared = {}
    for name in (ALL_CASES, *names) if report.case_behaviors else ():
        found = report.differences(key, target, name)
        if found is not None:
            compared[name] = found
    difference_rows = [
        [_text(result.name), *(str(diffs[result.name]) if result.name in diffs else "best" if best == result.name
                               else "-" for best, diffs in compared.values())]
        for result in report.results
    ] if compared else []
    return {
        "slice_headers": names,
        "slice_rows": slice_rows,
        "difference_headers": [f"{name} (best baseline: {best})" for name, (best, _) in compared.items()],
        "difference_rows": difference_rows,
    }


def _eval_results(evaluation: dict[str, Any] | None, dataset_id: str | None, name: str | None) -> list[EvalResult]:
    """model-index entries: the plain model's metrics on the target behavior, exactly as measured."""
    if evaluation is None:
        return []
    report = EvaluationReport.from_dict(evaluation)
    if MODEL_RESULT not in [result.name for result in report.results]:
        return []
    target = report.target_behavior
    metrics = report[MODEL_RESULT].metrics.get(target, {})
    split = report.metadata.get("split")
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=f"Next-item recommendation ({target})",
            dataset_type=dataset_id or name or NOT_RECORDED,
            dataset_name=name or NOT_RECORDED,
            dataset_split=split,
            metric_type=key.lower(),
            metric_name=f"{key} ({target})",
            metric_value=metrics[key],
        )
        for metric in METRIC_NAMES
        for k in report.k_values
        if (key := metric_key(metric, k)) in metrics
    ]


def card_data(
    repo_id: str,
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    dataset_id: str | None = None,
) -> ModelCardData:
    """The card's YAML metadata: library, pipeline tag, tags, datasets and the model-index."""
    results = _eval_results(evaluation, dataset_id, dataset_name(training, evaluation))
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=list(CARD_TAGS),
        datasets=[dataset_id] if dataset_id else None,
        model_name=repo_id.split("/")[-1] if results else None,
        eval_results=results or None,
    )


def _usage_example(tokenizer: Any) -> dict[str, str]:
    """A history from the repo's own catalogue, so that the usage snippet runs as written."""
    behaviors = list(tokenizer.behaviors)
    items = tokenizer.item_ids[:2]
    history = [(behaviors[min(i, len(behaviors) - 1)], item) for i, item in enumerate(items)]
    return {"history": repr(history), "behavior": repr(tokenizer.target_behavior)}


def build_model_card(
    model: Any,
    tokenizer: Any,
    repo_id: str,
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    dataset_id: str | None = None,
    plot: str | None = None,
) -> ModelCard:
    """Render the card. `training` / `evaluation` are the parsed JSON files (None when absent);
    `dataset_id` is a Hub dataset id to list in the metadata; `plot` a figure file shipped in the repo."""
    data = card_data(repo_id, training, evaluation, dataset_id)
    card = ModelCard.from_template(
        data,
        template_str=load_template(),
        repo_id=repo_id,
        model_title=repo_id.split("/")[-1],
        target_behavior=tokenizer.target_behavior,
        num_items=_text(len(tokenizer.item_index)),
        model_rows=_model_rows(model, training),
        behavior_rows=_behavior_rows(tokenizer, training),
        semantic_ids=_semantic_id_facts(tokenizer, training),
        data_rows=_data_rows(training, evaluation),
        training_rows=_training_rows(training),
        has_training=training is not None,
        evaluation=_evaluation_facts(evaluation),
        data_warnings=_data_warnings(evaluation),
        plot=plot,
        usage=_usage_example(tokenizer),
        not_recorded=NOT_RECORDED,
    )
    return ModelCard(str(card))  # parse back: malformed metadata fails here, before any upload
