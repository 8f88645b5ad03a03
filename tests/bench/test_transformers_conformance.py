"""recipes/bench/transformers_conformance.py reads pytest's reports of a harness run (no third-party test runs here):
the terminal summary's counts and failure lines, and the junit report's per-test outcomes, each test placed under
the mixin that defines it."""

from __future__ import annotations

from pathlib import Path

import pytest

SUMMARY = """\
........F.s..sF [ 98%]
=========================== short test summary info ============================
FAILED tests/models/gamer/test_modeling_gamer.py::GamerModelTest::test_inputs_embeds - ValueError: inputs_embeds needs behavior_ids
FAILED tests/models/gamer/test_modeling_gamer.py::GamerModelTest::test_greedy_generate
SUBFAILED[<class 'gamer_hf.modeling.modeling_gamer.GamerForCausalLM'>] tests/models/gamer/test_modeling_gamer.py::GamerModelTest::test_resize_embeddings_untied - ValueError: cannot resize
SKIPPED [2] tests/test_modeling_common.py:4110: test requires accelerator
ERROR tests/models/gamer/test_modeling_gamer.py::GamerModelTest::test_model - RuntimeError: boom
3 failed, 150 passed, 41 skipped, 1 error, 58 warnings, 765 subtests passed in 70.84s (0:01:10)
"""

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3">
<testcase classname="tests.models.gamer.test_modeling_gamer.GamerModelTest" name="test_model" time="0.1"/>
<testcase classname="tests.models.gamer.test_modeling_gamer.GamerModelTest" name="test_inputs_embeds" time="0.1">
<failure message="ValueError: inputs_embeds needs behavior_ids and item_position_ids&#10;second line">traceback</failure></testcase>
<testcase classname="tests.models.gamer.test_modeling_gamer.GamerModelTest" name="test_sliding_window_mask" time="0">
<skipped type="pytest.skip" message="Model does not support sliding window mask">skip</skipped></testcase>
</testsuite></testsuites>
"""


@pytest.fixture(scope="module")
def conformance(bench_script):
    return bench_script("transformers_conformance.py")


def test_the_summary_gives_the_counts_and_each_failure_with_its_reason(conformance) -> None:
    summary = conformance.parse_summary(SUMMARY)
    assert summary.counts == {"failed": 3, "passed": 150, "skipped": 41, "errors": 1}
    prefix = "tests/models/gamer/test_modeling_gamer.py::GamerModelTest::"
    assert summary.failures == {
        prefix + "test_inputs_embeds": "ValueError: inputs_embeds needs behavior_ids",
        prefix + "test_greedy_generate": "",
        prefix + "test_model": "RuntimeError: boom",
    }
    # a failed subtest is counted in "failed" by pytest; it is kept apart, named with its subtest
    assert list(summary.subtest_failures) == [
        prefix + "test_resize_embeddings_untied [<class 'gamer_hf.modeling.modeling_gamer.GamerForCausalLM'>]"]


def test_the_junit_report_gives_one_outcome_per_test(conformance, tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT, encoding="utf-8")
    results = conformance.parse_junit(path)
    assert [(r.name, r.outcome, r.message) for r in results] == [
        ("test_model", "passed", ""),
        ("test_inputs_embeds", "failed", "ValueError: inputs_embeds needs behavior_ids and item_position_ids"),
        ("test_sliding_window_mask", "skipped", "Model does not support sliding window mask"),
    ]
    run = conformance.ModuleRun("GAMER", 1.0, 1, conformance.Summary(), results,
                                {"test_model": "CausalLMModelTest", "test_inputs_embeds": "ModelTesterMixin",
                                 "test_sliding_window_mask": "ModelTesterMixin"})
    assert run.counts_by_mixin() == {"CausalLMModelTest": {"passed": 1},
                                     "ModelTesterMixin": {"failed": 1, "skipped": 1}}
    table = conformance.markdown([run])
    assert "| GAMER | 1 | 1 | 0 | 1 | 47 / 143 |" in table
    assert "| by design | 1: `test_inputs_embeds` | ValueError: inputs_embeds needs behavior_ids" in table
    record = conformance.run_record(run)
    assert record["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert [(row["name"], row["mixin"], row["kind"]) for row in record["failed"]] == [
        ("test_inputs_embeds", "ModelTesterMixin", "by design")]


@pytest.mark.parametrize("message, kind", [
    ("ValueError: inputs_embeds needs behavior_ids and item_position_ids: GAMER derives ...", "by design"),
    ("ValueError: cannot resize GAMER's embeddings to 40: the vocabulary is fixed by its layout", "by design"),
    ("RuntimeError: strides should be multiple of 16 bytes", "defect"),
    ("AssertionError: 2 != 3", "unclassified"),
])
def test_a_failure_is_classified_by_what_its_message_says(conformance, message, kind) -> None:
    assert conformance.classify(message)[0] == kind
    assert conformance.classify(message)[0] in (*conformance.KINDS, "unclassified")


@pytest.mark.parametrize("module_text, names", [
    (None, ["not found"]),  # no harness folder
    ("import a_module_that_is_not_installed\n", ["cannot be imported", "ModuleNotFoundError",
                                                 "a_module_that_is_not_installed"]),  # a broken link or stand-in
])
def test_a_broken_harness_is_one_line_and_exit_2(conformance, tmp_path: Path, capsys, module_text, names) -> None:
    if module_text is not None:
        module = tmp_path / conformance.MODULES["GAMER"][0]
        module.parent.mkdir(parents=True)
        module.write_text(module_text, encoding="utf-8")
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as exit_:
        conformance.main(["--transformers-tests", str(tmp_path), "--models", "GAMER", "--json", str(out)])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and error.startswith("error: ")
    assert all(name in error for name in names)
    assert not out.exists()  # nothing written
