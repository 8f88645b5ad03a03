"""recipes/bench/quality.py: its pieces, and one tiny end-to-end run on synthetic data (rules, SASRec, GAMER+mix)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from gamer_hf.data import generate_synthetic, write_synthetic
from gamer_hf.errors import ConfigurationError
from gamer_hf.evaluation import GATE_GRID, MIXER_GRID, REGULARIZATION_GRID

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "bench" / "quality.py"


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A /work/shared/data-style folder named "synthetic" (events.csv.gz + meta.json)."""
    root = tmp_path_factory.mktemp("bench_data")
    events, items = generate_synthetic(num_users=80, num_items=40, seed=1)
    write_synthetic(root / "synthetic", events, items)
    return root


def _record(target_ndcg: float, merged_ndcg: float) -> dict:
    metrics = {"HR@10": 2 * target_ndcg, "NDCG@10": target_ndcg}
    return {"result": {"target": metrics, "merged": {"HR@10": 2 * merged_ndcg, "NDCG@10": merged_ndcg}}}


def test_aggregate_is_mean_and_sample_std_over_seeds(quality) -> None:
    values = {"0": (0.1, 0.2), "1": (0.3, 0.5), "2": (0.2, 0.2)}
    runs = {"d": {seed: {"SASRec": _record(*pair), "Repeat": _record(0.4, 0.4)} for seed, pair in values.items()}}
    summary = quality.aggregate(runs)["d"]
    assert list(summary) == ["Repeat", "SASRec"]  # the benchmark's model order
    target = np.array([pair[0] for pair in values.values()])
    assert summary["SASRec"]["target_NDCG@10_mean"] == pytest.approx(target.mean())
    assert summary["SASRec"]["target_NDCG@10_std"] == pytest.approx(target.std(ddof=1))
    assert summary["SASRec"]["merged_HR@10_mean"] == pytest.approx(2 * np.mean([p[1] for p in values.values()]))
    assert summary["Repeat"]["target_NDCG@10_std"] == pytest.approx(0.0, abs=1e-12) and summary["Repeat"]["seeds"] == 3


def _results(seed: str, ndcg: float, budget: str = "quick", chosen: str = "append") -> dict:
    return {"budget": {"name": budget}, "started": f"2026-12-03 1{seed}:00",
            "datasets": {"d": {"cases": {"case_slices": ["repeat"]}, "collision_choice": {"GAMER": {"chosen": chosen}}}},
            "runs": {"d": {seed: {"SASRec": _record(ndcg, ndcg)}}}}


def test_merge_puts_side_by_side_seeds_in_one_file_and_renders_it(quality, tmp_path) -> None:
    import gzip

    first = _results("0", 0.1)
    second = _results("1", 0.3)
    second["runs"]["d"]["0"] = first["runs"]["d"]["0"]  # started from a copy of seed 0's file
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(json.dumps(second).encode()))
    merged = quality.merge([tmp_path / "a.json", tmp_path / "b.json.gz"])
    assert sorted(merged["runs"]["d"]) == ["0", "1"] and merged["started"] == "2026-12-03 10:00"
    assert quality.aggregate(merged["runs"])["d"]["SASRec"]["target_NDCG@10_mean"] == pytest.approx(0.2)
    for change, message in ((lambda r: r["budget"].update(name="small"), "'small' run"),
                            (lambda r: r["datasets"]["d"]["collision_choice"]["GAMER"].update(chosen="reassign"),
                             "chosen tokenizers differ"),
                            (lambda r: r["runs"]["d"]["0"].update(SASRec=_record(0.5, 0.5)), "seed 0 SASRec differs")):
        other = json.loads(json.dumps(second))
        change(other)
        (tmp_path / "c.json").write_text(json.dumps(other))
        with pytest.raises(ConfigurationError, match=message):
            quality.merge([tmp_path / "a.json", tmp_path / "c.json"])
    (tmp_path / "broken.json.gz").write_bytes(b"not gzip")
    for name in ("missing.json", "broken.json.gz"):  # one line naming the file, no traceback
        with pytest.raises(ConfigurationError, match=f"{name}: not a readable quality.json"):
            quality.merge([tmp_path / "a.json", tmp_path / name])


def test_a_finished_run_is_reused_only_with_the_same_arguments(quality, tmp_path) -> None:
    """A field added to TrainArguments since a run counts as its default there (the run did what the default does)."""
    from dataclasses import asdict

    arguments = quality.TrainArguments(data="d", output_dir=str(tmp_path), tokenizer="t", seed=1)
    stored = {k: v for k, v in asdict(arguments).items() if k != "score_repeats"}  # written before the field existed
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / quality.TRAINING_INFO_FILE).write_text(json.dumps({"training_arguments": stored}))
    assert quality.reusable_run(arguments) == tmp_path
    assert quality.reusable_run(replace(arguments, score_repeats=False)) is None
    assert quality.reusable_run(replace(arguments, seed=2)) is None


def test_runs_on_different_semantic_ids_are_named(quality) -> None:
    """Seeds run on two machines (or a model retrained beside another's old run) may have trained on different IDs;
    the report lists which runs used which, blends and side rows under their model."""
    ids = {"0": "a" * 16, "1": "b" * 16}
    runs = {seed: {"SASRec": {}, "GAMER": {"semantic_ids_sha256": digest}, "GAMER+mix": {"semantic_ids_sha256": digest},
                   "GAMER:no-history": {"semantic_ids_sha256": digest}} for seed, digest in ids.items()}
    assert quality.id_assignment_lines(runs) == [
        "- semantic IDs differ between runs (sha256 of the item index): `aaaaaaaa` GAMER seed 0; `bbbbbbbb` GAMER seed 1"]
    runs["1"]["GAMER"]["semantic_ids_sha256"] = ids["0"]
    assert quality.id_assignment_lines(runs) == []
    assert quality.id_assignment_lines({"0": {"GAMER": {}}}) == []  # runs from before the digest was recorded


@pytest.mark.parametrize("flags", [["--merge", "{tmp}/a.json", "{tmp}/missing.json.gz"], ["--render"],
                                   ["--resume"], ["--choices-from", "{tmp}/a.json", "--epochs", "12"]])
def test_a_file_the_user_gave_wrong_is_one_line_and_exit_2(quality, tmp_path, capsys, flags) -> None:
    (tmp_path / "a.json").write_text(json.dumps(_results("0", 0.1, budget="small")))
    out = tmp_path / "out"
    if "--resume" in flags:  # --out holds a run of another budget
        out.mkdir()
        (out / "quality.json").write_text(json.dumps(_results("0", 0.1, budget="small-epochs=3")))
    argv = [flag.format(tmp=tmp_path) for flag in flags]
    with pytest.raises(SystemExit) as stopped:
        quality.main([*argv, "--out", str(out), "--data-dir", str(tmp_path), "--datasets", "retailrocket_cml"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.startswith("quality.py: error: ") and error.count("\n") == 1
    assert ("missing.json.gz" if "--merge" in flags else "quality.json" if "--render" in flags else
            "'small-epochs=3' run; --resume needs the same budget" if "--resume" in flags else
            "'small' run; --choices-from needs the same budget ('small-epochs=12'") in error


def test_a_seed_run_takes_the_collision_choices_it_lacks_from_choices_from(quality, tmp_path) -> None:
    seed0 = _results("0", 0.1, budget="cpu5k")
    seed0["budget"]["select_by"] = "ndcg"
    seed0["datasets"]["e"] = {"collision_choice": {"TIGER": {"chosen": "reassign"}}}
    (tmp_path / "seed0.json").write_text(json.dumps(seed0))
    args = quality.parse_args(["--data-dir", ".", "--budget", "cpu5k", "--out", str(tmp_path / "seed1"),
                               "--choices-from", str(tmp_path / "seed0.json")])
    started = quality.starting_results(args, quality.budget_for(args))
    assert started["runs"] == {}  # choices only: seed 0's rows stay in its own file
    assert started["datasets"] == {"d": {"collision_choice": {"GAMER": {"chosen": "append"}}},
                                   "e": {"collision_choice": {"TIGER": {"chosen": "reassign"}}}}
    own = _results("1", 0.2, budget="cpu5k", chosen="reassign")  # --out's own choice wins on --resume
    own["budget"]["select_by"] = "ndcg"
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "quality.json").write_text(json.dumps(own))
    resumed = quality.starting_results(quality.parse_args([*["--data-dir", ".", "--budget", "cpu5k"], "--resume",
                                                           "--out", str(tmp_path / "seed1"), "--choices-from",
                                                           str(tmp_path / "seed0.json")]), quality.budget_for(args))
    assert resumed["runs"] == own["runs"] and resumed["datasets"]["d"]["collision_choice"]["GAMER"]["chosen"] == "reassign"
    assert resumed["datasets"]["e"]["collision_choice"]["TIGER"]["chosen"] == "reassign"


def test_user_subsample_is_seeded_and_keeps_the_layout(quality, data_dir, tmp_path) -> None:
    first = quality.subsample_users(data_dir / "synthetic", tmp_path / "a", 30, seed=5)
    again = quality.subsample_users(data_dir / "synthetic", tmp_path / "b", 30, seed=5)
    other = quality.subsample_users(data_dir / "synthetic", tmp_path / "c", 30, seed=6)
    read = lambda folder: (folder / "events.csv.gz").read_bytes()  # noqa: E731
    assert read(first) == read(again) != read(other)
    assert (first / "meta.json").read_text() == (data_dir / "synthetic" / "meta.json").read_text()
    assert quality.subsample_users(data_dir / "synthetic", tmp_path / "d", 10_000, seed=5) == data_dir / "synthetic"


def test_quick_pipeline_end_to_end_and_resume(quality, data_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(quality.DATASETS, "synthetic", "session")
    budget = replace(quality.BUDGETS["quick"], epochs=2, max_users=None, max_validation_cases=20, max_test_cases=30,
                     mixer_cases=12, sid_levels=2, sid_codebook=8, num_beams=10)
    models = ["MostPopular", "Repeat", "Repeat+popular", "Repeat+learned", "SASRec", "SASRec:ndcg", "GAMER",
              "GAMER+mix", "GAMER+rerank", "GAMER-noaug:last", "GAMER-reg", "GAMER-explore", "GAMER-explore-nhsel", "SASRec-explore"]
    argv = ["--datasets", "synthetic", "--seeds", "0", "--models", *models, "--data-dir", str(data_dir),
            "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--no-progress"]
    saved_cases = []  # every file written mid-run holds the test cases (a --merge of it must not fail)
    save = quality.save
    monkeypatch.setattr(quality, "save", lambda results, out: (
        saved_cases.append(all("cases" in entry for entry in results["datasets"].values())), save(results, out)))
    results = quality.run(quality.parse_args(argv), budget)
    assert len(saved_cases) > 3 and all(saved_cases)

    runs = results["runs"]["synthetic"]["0"]
    side = ["SASRec:no-history", "GAMER:no-history", "GAMER-reg:no-history", "GAMER-explore:no-history",
            "GAMER-explore-nhsel:no-history", "SASRec-explore:no-history", "GAMER+rerank:plain-beams"]
    assert sorted(runs) == sorted(models + side)
    for row in ("SASRec:no-history", "GAMER:no-history"):  # the lists hold no history item, on any slice
        assert set(runs[row]["history_share@10"].values()) == {0.0}
    assert runs["Repeat"]["history_share@10"]["explore"] > 0 and runs["MostPopular"]["history_share@10"]
    assert runs["SASRec"]["selected_by"] == runs["SASRec:ndcg"]["selected_by"] == "ndcg"  # the budget's default
    assert runs["GAMER"]["selected_by"] == "ndcg" and any("eval_ndcg10" in row for row in runs["GAMER"]["validation"])
    last = runs["GAMER-noaug:last"]
    assert last["stop_reason"] != "early_stopping" and last["evaluated_step"] == last["global_step"]
    assert runs["GAMER"]["evaluated_step"] <= runs["GAMER"]["global_step"]
    assert runs["GAMER+mix"]["mixer"] in [dict(vars(m), behaviors=None) for m in MIXER_GRID]  # the library's grid
    learned, reranked = runs["Repeat+learned"]["reranker"], runs["GAMER+rerank"]["reranker"]
    assert not learned["use_model"] and reranked["use_model"]
    assert learned["weights"]["fit_cases"] == reranked["weights"]["fit_cases"] == 12  # the validation cases, not test
    assert reranked["residual"] and reranked["rule"]["weights"] == learned["weights"]  # on top of Repeat+learned itself
    assert "rule_coef" not in reranked["weights"] and runs["GAMER+rerank"]["fit"]["rerank"].startswith("offset")
    # Cross-validated on those cases alike; the residual fit also on the rule alone and on GAMER's model columns alone.
    for fitted, extra in ((learned, 0), (reranked, 1)):
        assert len(fitted["weights"]["cv_ndcg10"]) == (1 + extra) * len(REGULARIZATION_GRID) * len(GATE_GRID) + extra
        assert fitted["weights"]["regularization"] in (0.0,) * extra + REGULARIZATION_GRID
        assert fitted["weights"]["gate"] in GATE_GRID
    learned_features, reranked_features = ([name for name in fitted["weights"]["features"] if "*" not in name]
                                           for fitted in (learned, reranked))  # the candidate features, ungated
    assert len(learned_features) == 8 and len(reranked_features) in (0, 4 + 3, 8 + 4 + 3)  # + model and explore features
    assert reranked["explore"] and not runs["GAMER+rerank:plain-beams"]["reranker"]["explore"]
    assert runs["GAMER"]["result"]["num_cases"] == runs["Repeat"]["result"]["num_cases"]
    assert sum(runs["Repeat"]["result"]["num_cases"].values()) == 30
    stats = results["datasets"]["synthetic"]
    assert stats["test_cases_used"] == 30 and 0.0 <= stats["all_targets_seen_in_training"] <= 1.0
    choice = stats["collision_choice"]["GAMER"]  # GAMER's family chose on validation; its rows use that tokenizer
    assert list(stats["collision_choice"]) == ["GAMER"] and set(stats["semantic_ids"]) == set(
        quality.COLLISIONS) - set(stats["semantic_ids_unbuilt"])
    assert choice["chosen"] == quality.choose_collisions(choice["validation_ndcg10"]) if choice["validation_ndcg10"] else (
        choice["chosen"] == "append")
    for handling, figure in choice["validation_ndcg10"].items():  # each figure is that run's own validation NDCG@10
        trained = json.loads((tmp_path / "work" / "synthetic" / "seed0" / f"GAMER-{handling}" / quality.TRAINING_INFO_FILE
                              ).read_text())
        assert figure == trained["results"]["best_eval_ndcg10"]
    assert {runs[m]["collisions"] for m in ("GAMER", "GAMER-noaug:last", "GAMER-reg")} == {choice["chosen"]}
    digest = quality.sha256_of(tmp_path / "work" / "synthetic" / f"tokenizer-{choice['chosen']}" / "item_index.safetensors")
    assert {runs[m]["semantic_ids_sha256"] for m in ("GAMER", "GAMER-noaug:last", "GAMER-reg")} == {digest[:16]}
    regularized = tmp_path / "work" / "synthetic" / "seed0" / f"GAMER-reg-{choice['chosen']}"  # its own folder
    trained = json.loads((regularized / quality.TRAINING_INFO_FILE).read_text())["training_arguments"]
    assert (trained["dropout"], trained["weight_decay"]) == (0.3, 0.1) == tuple(
        quality.TRAINING_OVERRIDES["GAMER-reg"].values())
    assert trained["score_repeats"] and not json.loads((regularized.parent / f"GAMER-explore-{choice['chosen']}" /
                                                        quality.TRAINING_INFO_FILE).read_text())["training_arguments"][
        "score_repeats"]
    own_use = json.loads((regularized.parent / f"GAMER-explore-nhsel-{choice['chosen']}" / quality.TRAINING_INFO_FILE
                          ).read_text())["training_arguments"]  # selected on the decoding without the history
    assert own_use["ranking_exclude_history"] and not own_use["score_repeats"]
    assert json.loads((regularized / "config.json").read_text())["hidden_dropout"] == 0.3
    assert not set(quality.TRAINING_OVERRIDES) & set(quality.MODELS)  # study rows, run only when named
    assert runs["GAMER"]["reused_checkpoint"] == (len(choice["validation_ndcg10"]) > 1)  # seed 0: the choice's run
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert saved["summary"]["synthetic"]["SASRec"]["seeds"] == 1 and saved["budget"]["name"] == "quick"
    table = (tmp_path / "out" / "quality.md").read_text()
    assert f"GAMER's semantic IDs: **{choice['chosen']}**" in table
    assert "target explore NDCG@10" in table and "paired bootstrap" in table and "| GAMER | 0 |" in table
    assert "semantic IDs differ" not in table  # one tokenizer
    reg = next(line for line in table.splitlines() if line.startswith("| GAMER-reg | 0 |"))  # beside the baselines
    assert "all vs GAMER" in table and reg.rstrip(" |").endswith("vs GAMER")  # and against GAMER itself
    explore = next(line for line in table.splitlines() if line.startswith("| GAMER-explore:no-history | 0 |"))
    assert explore.split(" | ")[-2].endswith("vs GAMER:no-history")  # its explore slice against GAMER's
    assert runs["SASRec-explore"]["validation"] != runs["SASRec"]["validation"]  # trained otherwise, same seed
    assert "explore vs best learned without history" in table and "explore history share@10" in table
    assert len(results["datasets"]["synthetic"]["cases"]["case_slices"]) == 30
    assert all(f"| {model} | 1 |" in table for model in models)
    assert (tmp_path / "out" / "quality.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "out" / "quality.md").unlink()
    quality.main(["--render", "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "quality.md").read_text() == table

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(quality, "train_gamer", no_training)
    monkeypatch.setattr(quality, "run_sasrec", no_training)
    again = quality.run(quality.parse_args([*argv, "--resume"]), budget)
    assert again["runs"]["synthetic"]["0"]["GAMER"] == runs["GAMER"]
    assert again["datasets"]["synthetic"]["collision_choice"] == stats["collision_choice"]  # resume keeps the choice
    # The new-items reranker asked for on resume: fit and scored beside GAMER+rerank from the same checkpoint and beams.
    extra = quality.run(quality.parse_args([*argv, "--resume", "--models", *models, quality.RERANK_NEW_ITEMS]), budget)
    rows = extra["runs"]["synthetic"]["0"]
    assert rows[quality.RERANK_NEW_ITEMS]["reranker"]["residual_items"] == "new" and (
        rows[quality.RERANK_NEW_ITEMS]["fit"] == runs["GAMER+rerank"]["fit"])
    assert rows["GAMER+rerank"]["reranker"] == runs["GAMER+rerank"]["reranker"]  # refit on the same beams: the same
    assert rows["GAMER+rerank"]["result"]["per_case"] == runs["GAMER+rerank"]["result"]["per_case"]
    assert rows["GAMER+mix"] == runs["GAMER+mix"] and rows["GAMER"] == runs["GAMER"]  # kept as they were
    assert f"| {quality.RERANK_NEW_ITEMS} | 0 |" in (tmp_path / "out" / "quality.md").read_text()
    assert "all vs GAMER+rerank" in (tmp_path / "out" / "quality.md").read_text()
    with pytest.raises(SystemExit):
        quality.parse_args([*argv[:4], "--models", "GAMER", quality.RERANK_NEW_ITEMS, "--data-dir", "."])
    monkeypatch.undo()
    monkeypatch.setitem(quality.DATASETS, "synthetic", "session")
    monkeypatch.setattr(quality, "train", no_training)  # more test cases: the checkpoint is scored again, not retrained
    wider = quality.run(quality.parse_args([*argv, "--test-cases", "all", "--out", str(tmp_path / "wider"),
                                            "--models", "GAMER"]), budget)
    rescored = wider["runs"]["synthetic"]["0"]["GAMER"]
    assert rescored["reused_checkpoint"] and rescored["evaluated_step"] == runs["GAMER"]["evaluated_step"]
    assert sum(rescored["result"]["num_cases"].values()) == wider["datasets"]["synthetic"]["test_cases_total"] > 30
    assert wider["budget"]["name"] == "quick-test=all"
    remixed = quality.run(quality.parse_args([*argv, "--resume", "--redo", "GAMER+mix", "GAMER+rerank"]), budget)
    for blend in quality.BLENDS:  # same model, same grid, same validation cases: same choice and fit
        assert remixed["runs"]["synthetic"]["0"][blend]["result"]["metrics"] == runs[blend]["result"]["metrics"]
    # Other fit cases: --resume refits exactly the rows fit on them, and nothing is trained.
    refit = quality.run(quality.parse_args([*argv, "--resume"]), replace(budget, mixer_cases=10))["runs"]["synthetic"]["0"]
    for row in ("Repeat+learned", "GAMER+rerank", "GAMER+rerank:plain-beams"):
        assert refit[row]["reranker"]["weights"]["fit_cases"] == 10 and refit[row]["fit"]["cases"] == 10
    assert refit["GAMER+mix"]["fit"]["cases"] == 10 and refit["GAMER"] == runs["GAMER"]


@pytest.mark.parametrize(
    ("flags", "name", "epochs", "users"),
    [([], "small", 6, 2500), (["--epochs", "12"], "small-epochs=12", 12, 2500),
     (["--budget", "cpu5k"], "cpu5k", 6, 5000), (["--epochs", "3", "--test-cases", "all"], "small-epochs=3-test=all", 3, 2500),
     (["--budget", "cpu5k", "--epochs", "12", "--patience", "0"], "cpu5k-epochs=12-patience=0", 12, 5000),
     (["--budget", "cpu5k", "--patience", "0", "--validation-cases", "2000", "--test-cases", "all"],
      "cpu5k-patience=0-validation=2000-test=all", 6, 5000)],
)
def test_budget_flags_name_the_budget(quality, flags, name, epochs, users) -> None:
    budget = quality.budget_for(quality.parse_args(["--data-dir", ".", *flags]))
    assert (budget.name, budget.epochs, budget.max_users) == (name, epochs, users)
    assert budget.patience == (0 if "--patience" in flags else quality.BUDGETS[budget.name.split("-")[0]].patience)
    default = quality.BUDGETS[budget.name.split("-")[0]].max_validation_cases
    assert budget.max_validation_cases == (2000 if "--validation-cases" in flags else default)
    assert not hasattr(budget, "max_train_seconds")  # step budgets only: no wall-clock cap


@pytest.mark.parametrize(("flags", "message"), [
    (["--patience=-1"], "--patience takes a number >= 0"),
    (["--test-cases", "0"], "--test-cases takes a positive number or 'all'"),
    (["--validation-cases", "all"], "--validation-cases takes a positive number, got 'all'")])
def test_a_bad_budget_flag_is_refused_with_usage_and_exit_2(quality, capsys, flags, message) -> None:
    with pytest.raises(SystemExit) as stopped:
        quality.parse_args(["--data-dir", ".", *flags])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_issue_16_cpu_bench_is_a_named_preset(quality) -> None:
    budget = quality.BUDGETS["cpu5k"]
    assert budget.max_users >= 5000 and budget.max_test_cases >= 1000 and budget.select_by == "ndcg"


@pytest.mark.parametrize(("figures", "chosen"), [
    ({"reassign": 0.0210, "append": 0.0379}, "append"), ({"reassign": 0.03, "append": 0.02}, "reassign"),
    ({"append": 0.02, "reassign": 0.02}, "reassign"),  # a tie: reassign, whatever the order given
    ({"append": 0.01}, "append")])
def test_the_collision_handling_is_the_better_validation_figure(quality, figures, chosen) -> None:
    assert quality.choose_collisions(figures) == chosen


def test_the_collision_choice_reads_validation_only_and_resume_keeps_it(quality) -> None:
    validation = {"reassign": 0.031, "append": 0.024}  # two fake trained runs: validation and test disagree
    test = {"reassign": 0.010, "append": 0.050}
    runs = {h: {"best_eval_ndcg10": validation[h], "test_ndcg10": test[h]} for h in validation}
    asked = []

    def validate(handling):
        asked.append(handling)
        return runs[handling]["best_eval_ndcg10"]

    choice = quality.collision_choice(["reassign", "append"], validate, {})
    assert choice["chosen"] == "reassign" and choice["validation_ndcg10"] == validation and asked == ["reassign", "append"]

    def retrained(handling):
        raise AssertionError("a stored choice was made again")

    assert quality.collision_choice(["reassign", "append"], retrained, {}, stored=choice) == choice
    flipped = dict(choice, chosen="append")  # a stored choice is kept as recorded, not recomputed
    assert quality.collision_choice(["reassign", "append"], retrained, {}, stored=flipped)["chosen"] == "append"
    lone = quality.collision_choice(["append"], retrained, {"reassign": "prefix (1, 2) already uses all 64"}, stored=choice)
    assert lone["chosen"] == "append" and lone["validation_ndcg10"] == {}  # other candidates: chosen anew, no training
    assert "no reassign tokenizer: prefix" in quality.collision_lines({"GAMER": lone})[0]
    with pytest.raises(ValueError, match="no collision handling"):
        quality.choose_collisions({})


def test_tiger_chooses_for_itself_and_the_gamer_variants_follow_gamer(quality) -> None:
    assert [quality.family(m) for m in ("TIGER", "TIGER:no-history", "GAMER", "GAMER-noaug:last", "GAMER-nocross")] == [
        "TIGER", "TIGER", "GAMER", "GAMER", "GAMER"]
    assert quality.families_of(["Repeat", "SASRec", "TIGER", "GAMER+mix"]) == ["GAMER", "TIGER"]
    assert quality.families_of(["Repeat", "SASRec"]) == []
