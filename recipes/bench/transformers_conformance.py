"""Transformers' own model tests on GamerForCausalLM beside Qwen3, on the same harness (issue 11).

Issue 11 was filed after running Transformers' test mixins (ModelTesterMixin, GenerationTesterMixin,
CausalLMModelTest, set up as tests/models/qwen3/test_modeling_qwen3.py does) on transformers 5.24: GAMER failed
47 and skipped 143 where Qwen3 failed 4 and skipped 138. This script reruns that comparison: it runs a Qwen3 and
a GAMER test module of a harness folder with pytest, each in its own process, and writes the counts per model and
per mixin, and GAMER's failures with one-line reasons, each classified (`CLASSIFICATION`), into a JSON; it prints
the tables as Markdown.

The harness is third-party code and never enters this repository. Build it in a scratch folder:

- `pip download transformers==$(python -c "import transformers; print(transformers.__version__)") --no-binary :all:
  --no-deps` and extract the sdist's top-level `tests/*.py` (test_modeling_common.py, test_configuration_common.py,
  test_pipeline_mixin.py, test_training_mixin.py, ...) into `HARNESS/tests/` (with `__init__.py` files);
- the files the sdist lacks (tests/causal_lm_tester.py, tests/generation/test_utils.py,
  tests/exporters/test_export.py, tests/distributed_testing_utils.py, tests/utils/test_configuration_utils.py) come
  from the transformers repository at the installed version; where that is out of reach they were taken from the
  code store of the search tool (`read_file`, repository huggingface/transformers or a fork, one stored commit,
  not necessarily the installed version) or written as stand-ins; RESULTS.md says which, for the run it reports;
- the pipeline mixin reads `HARNESS/tests/utils/tiny_model_summary.json` (`{}`: no Hub tiny models, its tests
  skip) and imports `HARNESS/src/transformers` (a link to the installed package);
- `HARNESS/tests/models/qwen3/test_modeling_qwen3.py` (class `Qwen3ModelTest`) and
  `HARNESS/tests/models/gamer/test_modeling_gamer.py` (classes `GamerModelTest`, and `GamerAlignedModelTest` whose
  tester differs in the expert width only): the modules over the same mixins.

Transformers' test files import `parameterized` (`pip install parameterized`), which gamer_hf does not need.

    OMP_NUM_THREADS=1 python recipes/bench/transformers_conformance.py --transformers-tests HARNESS \
        --json recipes/bench/results/transformers_conformance.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gamer_hf.files import atomic_output

# name -> (module path inside the harness folder, test class). "GAMER-aligned" is GAMER's tester with the expert
# width 40 instead of the generic tester's 37 (see RESULTS.md: torch's CPU grouped matmul needs 16-byte rows).
MODULES = {
    "Qwen3": ("tests/models/qwen3/test_modeling_qwen3.py", "Qwen3ModelTest"),
    "GAMER": ("tests/models/gamer/test_modeling_gamer.py", "GamerModelTest"),
    "GAMER-aligned": ("tests/models/gamer/test_modeling_gamer.py", "GamerAlignedModelTest"),
}
# The counts issue 11 was filed with (transformers 5.24, the filer's harness).
ISSUE_COUNTS = {"Qwen3": {"failed": 4, "skipped": 138}, "GAMER": {"failed": 47, "skipped": 143}}

KINDS = ("defect", "by design", "harness")
# GAMER's failures, by what the failure says: (pattern in the message, kind, why). "by design": the test's premise
# cannot hold for GAMER and the model refuses it up front with an error that says why; "harness": an artifact of
# the harness (its stand-ins, its inputs), not of the model; "defect": a real defect of the model. Written after
# the run of 2026-12-02 that RESULTS.md reports; a failure no pattern matches is "unclassified".
CLASSIFICATION: list[tuple[str, str, str]] = [
    ("strides should be multiple of 16 bytes", "defect",
     "the expert FFN calls torch's grouped matmul, whose CPU kernel needs 16-byte rows: an expert width of 37 "
     "(the generic tester's intermediate_size) crashes every forward; the presets' widths are aligned"),
    ("data-dependent expression", "defect",
     "with a static cache, GamerCache.last_behavior_ids() indexes the role keys at get_seq_length() - 1, a "
     "data-dependent count, so a fullgraph-compiled decode forward does not trace although _can_compile_fullgraph "
     "is True"),
    ("inputs_embeds needs behavior_ids and item_position_ids", "by design",
     "GAMER derives each token's behavior identity and expert route from its id; inputs_embeds alone is refused "
     "with that error (issue 11 point 3); the mixin passes no role inputs beside the embeddings"),
    ("cannot resize GAMER's embeddings", "by design",
     "the vocabulary is the layout (specials, behaviors, codes per level): a resize is refused before anything "
     "changes (issue 11 point 10)"),
]

_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")
_FAILED = re.compile(r"^(FAILED|ERROR|SUBFAILED\[.*?\]) (\S+?)(?: - (.*))?$")


@dataclass
class Summary:
    """What pytest's terminal summary (`-q -rfs`) says: the final counts and the failed or erroring tests."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # test id -> one-line reason ("" if none printed)
    subtest_failures: dict[str, str] = field(default_factory=dict)  # "test id [subtest]" -> reason


def parse_summary(text: str) -> Summary:
    """Counts from the last line that has them (`3 failed, 250 passed, 14 skipped in 80.2s`), FAILED / ERROR and
    SUBFAILED lines of the short summary with their reasons. pytest's "failed" count includes failed subtests
    (`self.subTest`), each on a SUBFAILED line; the per-test count is in the junit report."""
    summary = Summary()
    for line in text.splitlines():
        match = _FAILED.match(line.strip())
        if match is None:
            continue
        reason = (match.group(3) or "").strip()
        if match.group(1).startswith("SUBFAILED"):
            summary.subtest_failures[f"{match.group(2)} {match.group(1)[len('SUBFAILED'):]}"] = reason
        else:
            summary.failures[match.group(2)] = reason
    for line in reversed(text.splitlines()):
        found = _COUNT.findall(line)
        if found:
            for number, word in found:
                summary.counts["errors" if word.startswith("error") else word] = int(number)
            break
    return summary


@dataclass
class TestResult:
    name: str
    outcome: str  # passed / failed / skipped / errors
    message: str


def parse_junit(path: Path) -> list[TestResult]:
    """Per-test outcomes from pytest's `--junitxml` (the terminal summary groups skips by location, not by test)."""
    results = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            node = case.find(tag)
            if node is not None:
                outcome, message = name, (node.get("message") or node.text or "").strip()
                break
        results.append(TestResult(case.get("name", ""), outcome, first_line(message)))
    return results


def first_line(message: str, width: int = 220) -> str:
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def classify(message: str) -> tuple[str, str]:
    """(kind, why) of a GAMER failure from its message; ("unclassified", "") where no pattern of the table matches."""
    for pattern, kind, why in CLASSIFICATION:
        if pattern in message:
            return kind, why
    return "unclassified", ""


# The defining class from the function's own qualified name: ModelTesterMixin re-sets every test on each subclass
# (wrapped in a Hub retry), so the class dictionaries all hold it.
_MIXINS = """
import importlib, inspect, json, sys
module = importlib.import_module(sys.argv[1])
cls = getattr(module, sys.argv[2])
print(json.dumps({name: inspect.unwrap(getattr(cls, name)).__qualname__.split(".")[0]
                  for name in dir(cls) if name.startswith("test") and callable(getattr(cls, name))}))
"""


class HarnessError(Exception):
    """The harness folder exists but its test module cannot be imported (a broken link, a missing stand-in): bad
    input, told in one line instead of a subprocess traceback."""


def mixin_of_tests(harness: Path, module_path: str, test_class: str, python: str, env: dict[str, str]) -> dict[str, str]:
    """Test name -> the class of the harness that defines it (ModelTesterMixin, GenerationTesterMixin, ...)."""
    module = module_path.removesuffix(".py").replace("/", ".")
    proc = subprocess.run([python, "-c", _MIXINS, module, test_class], cwd=harness, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no error output"]
        raise HarnessError(f"{harness / module_path}: {test_class} cannot be imported: {lines[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass
class ModuleRun:
    model: str
    seconds: float
    returncode: int
    summary: Summary
    tests: list[TestResult]
    mixins: dict[str, str]

    def counts_by_mixin(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter] = {}
        for test in self.tests:
            table.setdefault(self.mixins.get(test.name, "?"), Counter())[test.outcome] += 1
        return {mixin: dict(counts) for mixin, counts in sorted(table.items())}


def run_module(harness: Path, model: str, python: str, timeout: float) -> ModuleRun:
    """pytest on one test class in its own process; a failed subtest fails its test in the per-test outcomes."""
    module_path, test_class = MODULES[model]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "250",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    mixins = mixin_of_tests(harness, module_path, test_class, python, env)  # first: it fails fast on a broken harness
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        proc = subprocess.run(
            [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs", f"--junitxml={junit}",
             f"{module_path}::{test_class}"],
            cwd=harness, env=env, capture_output=True, text=True, timeout=timeout,
        )
        seconds = time.perf_counter() - start
        tests = parse_junit(junit) if junit.exists() else []
    summary = parse_summary(proc.stdout)
    return ModuleRun(model, seconds, proc.returncode, summary, tests, mixins)


def run_record(run: ModuleRun) -> dict:
    """The JSON of one run: counts per test and per mixin, pytest's own summary, and every test that did not pass
    (its mixin, its message; for GAMER's failures the kind and why)."""
    def entry(test: TestResult) -> dict:
        row = {"name": test.name, "mixin": run.mixins.get(test.name, "?"), "message": test.message}
        if test.outcome in ("failed", "errors") and run.model.startswith("GAMER"):
            row["kind"], row["why"] = classify(test.message)
        return row

    return {
        "model": run.model, "seconds": round(run.seconds, 1), "returncode": run.returncode,
        "counts": dict(Counter(test.outcome for test in run.tests)), "pytest_summary": asdict(run.summary),
        "by_mixin": run.counts_by_mixin(),
        "failed": [entry(t) for t in run.tests if t.outcome in ("failed", "errors")],
        "skipped": [entry(t) for t in run.tests if t.outcome == "skipped"],
    }


def markdown(runs: Sequence[ModuleRun]) -> str:
    lines = ["| model | passed | failed | errors | skipped | issue 11 (failed / skipped) | wall s |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for run in runs:
        c = Counter(test.outcome for test in run.tests)
        issue = ISSUE_COUNTS.get(run.model, {})
        lines.append(f"| {run.model} | {c['passed']} | {c['failed']} | {c['errors']} | {c['skipped']} | "
                     f"{issue.get('failed', '-')} / {issue.get('skipped', '-')} | {run.seconds:.0f} |")
    mixins = sorted({mixin for run in runs for mixin in run.counts_by_mixin()})
    lines += ["", "| mixin | " + " | ".join(f"{run.model} pass / fail / skip" for run in runs) + " |",
              "|---|" + "---|" * len(runs)]
    for mixin in mixins:
        cells = []
        for run in runs:
            c = run.counts_by_mixin().get(mixin, {})
            cells.append(f"{c.get('passed', 0)} / {c.get('failed', 0) + c.get('errors', 0)} / {c.get('skipped', 0)}")
        lines.append(f"| {mixin} | " + " | ".join(cells) + " |")
    for run in runs:
        failed = [test for test in run.tests if test.outcome in ("failed", "errors")]
        lines += ["", f"{run.model}: {len(failed)} failed", "", "| kind | tests | failure (one line) | why |",
                  "|---|---|---|---|"]
        groups: dict[tuple[str, str], list[TestResult]] = {}
        for test in failed:
            kind, why = classify(test.message) if run.model.startswith("GAMER") else ("-", "")
            groups.setdefault((kind, why), []).append(test)
        for (kind, why), tests in groups.items():
            names = ", ".join(f"`{test.name}`" for test in tests)
            message = tests[0].message.replace("|", "\\|")
            lines.append(f"| {kind} | {len(tests)}: {names} | {message} | {why} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transformers-tests", type=Path, required=True,
                        help="the harness folder (holds tests/ with the mixins and the two model modules)")
    parser.add_argument("--models", nargs="+", choices=list(MODULES), default=list(MODULES))
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per module")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch, transformers and gamer_hf")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    harness = args.transformers_tests.resolve()
    for model in args.models:
        if not (harness / MODULES[model][0]).is_file():
            print(f"error: {harness / MODULES[model][0]} not found (see this script's docstring)", file=sys.stderr)
            raise SystemExit(2)  # a wrong harness folder is bad input
    try:
        runs = [run_module(harness, model, args.python, args.timeout) for model in args.models]
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(markdown(runs))
    if args.json is not None:
        import transformers

        payload = {
            "transformers": transformers.__version__, "harness": str(harness), "issue_counts": ISSUE_COUNTS,
            "runs": [run_record(run) for run in runs],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(args.json) as temporary:
            temporary.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
