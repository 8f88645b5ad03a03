"""recipes/bench/data_pipeline.py's collation comparison: the batches training reads, collated by a child's code,
the table of the rounds, and where its part goes in RESULTS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from gamer_hf.data import SYNTHETIC_BEHAVIORS, generate_synthetic, prepare


@pytest.fixture(scope="module")
def pipeline(bench_script):
    return bench_script("data_pipeline.py")


@pytest.fixture(scope="module")
def batches(pipeline, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("collation")
    events, _ = generate_synthetic(num_users=400, num_items=120, seed=5)
    prepare(events, behaviors=SYNTHETIC_BEHAVIORS, protocol="session", max_history=None, augment_copies=1,
            progress=False, out=root / "prepared")
    counts = pipeline._write_batches(root / "prepared", 600, root / "batches")
    assert counts["train"] > 1 and counts["validation"] >= 1
    return root / "batches"


def test_arrow_batches_and_their_rows_collate_to_the_same_digest(pipeline, batches) -> None:
    arrow, rows = (pipeline.collate_batches(batches, 4, as_rows) for as_rows in (False, True))
    assert arrow["digest"] == rows["digest"] and arrow["tokens"] == rows["tokens"] > 0
    assert arrow["batches"] == rows["batches"] and set(arrow["seconds"]) == {"train", "validation"}
    shorter = pipeline.collate_batches(batches, 1, False)  # a different window: other outputs, other digest
    assert shorter["digest"] != arrow["digest"] and shorter["tokens"] < arrow["tokens"]


def test_packed_rows_collate_the_same_tokens_in_other_shapes(pipeline, batches) -> None:
    padded, packed = (pipeline.collate_batches(batches, 4, False, pack) for pack in (False, True))
    assert packed["tokens"] == padded["tokens"] > 0 and packed["digest"] != padded["digest"]


def test_the_table_gives_ratios_within_rounds_and_flags_a_differing_output(pipeline) -> None:
    def run(code: str, repeat: int, seconds: float, digest: str = "same") -> dict:
        return {"workload": "w", "code": code, "repeat": repeat, "tokens": 1_000_000, "batches": 4, "digest": digest,
                "seconds": {"train": seconds, "validation": 0.0}, "cpu_seconds": {"train": seconds, "validation": 0.0}}

    rows = [run("baseline", 0, 1.0), run("this tree", 0, 0.25), run("baseline", 1, 2.0), run("this tree", 1, 0.4),
            run("abc1234", 0, 0.5), run("abc1234", 1, 1.0, digest="other"),
            run(pipeline.PACKED, 0, 0.5, digest="packed"), run(pipeline.PACKED, 1, 1.0, digest="packed"),
            run("def5678" + pipeline.PACKED_AT, 0, 0.5, digest="packed"),
            run("def5678" + pipeline.PACKED_AT, 1, 1.0, digest="other")]
    table = pipeline._collation_table(rows, "5d24df8").splitlines()
    mine = next(line for line in table if "this branch" in line)
    assert "**4.5x** (4.0-5.0x)" in mine and mine.endswith("| yes |")  # median of the per-round ratios 4 and 5
    assert next(line for line in table if "`abc1234`" in line).endswith("| **no** |")
    packed = next(line for line in table if "this branch, packed" in line)  # its own shapes: not compared with
    assert "**2.0x** (2.0-2.0x)" in packed and packed.endswith("| packed rows |")  # the padded ones, not flagged
    commit = next(line for line in table if "`def5678`, packed" in line)  # compared with this tree's packed rows
    assert commit.endswith("| **no** (this tree's packed rows) |")


def test_a_new_part_goes_before_the_named_part_and_is_replaced_in_place(pipeline, tmp_path, monkeypatch) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(f"{pipeline.SECTION}\n\nintro\n\n{pipeline.ENGINES}\n\nengines\n\n## Next\n")
    monkeypatch.setattr(pipeline, "RESULTS", results)
    for body in ("first", "second"):
        pipeline.write_section(f"{pipeline.COLLATE_AB}\n\n{body}\n", pipeline.COLLATE_AB, before=pipeline.ENGINES)
    text = results.read_text()
    assert text == (f"{pipeline.SECTION}\n\nintro\n\n{pipeline.COLLATE_AB}\n\nsecond\n\n{pipeline.ENGINES}\n\n"
                    "engines\n\n## Next\n")


def test_the_collation_rounds_run_every_code_in_a_fresh_process_in_rotated_order(pipeline, batches, tmp_path,
                                                                              monkeypatch) -> None:
    """compare_collation drives the children through code_at's rounds: each code once a round, the order rotated,
    a commit's package first on its child's path, the loop collator fed Python rows."""
    import importlib

    code_at = importlib.import_module("code_at")  # the module compare_collation imports (its folder is on the path)
    monkeypatch.setattr(code_at, "package_at", lambda commit, into: into)  # no extraction: the folder names it
    calls = []

    def child(args, workload, env=None, **options):
        calls.append((env.get("PYTHONPATH", "this tree"), options.get("as_rows"), options.get("pack")))
        return {"tokens": 1, "seconds": {}, "cpu_seconds": {}, "batches": 1, "digest": "d"}

    monkeypatch.setattr(pipeline, "_child", child)
    keep = tmp_path / "keep"
    (keep / "prepared_retail_beh_mbht").mkdir(parents=True)
    (keep / "prepared_retail_beh_mbht" / "metadata.json").write_text("{}")
    (keep / "batches_retail_beh_mbht_600").symlink_to(batches)
    args = pipeline.parse_args(["--num-events", "--collate-baseline-commit", "aaa", "--collate-commits", "bbb",
                                "--collate-packed-commits", "ccc", "--repeats", "3", "--keep", str(keep),
                                "--collate-rows", "600"])
    rows = pipeline.compare_collation(args)
    packed_commit = "ccc" + pipeline.PACKED_AT  # packed only: not also a padded run
    paths = {"baseline": str((keep / "code_aaa").resolve()), "bbb": str((keep / "code_bbb").resolve()),
             "this tree": "this tree", pipeline.PACKED: "this tree", packed_commit: str((keep / "code_ccc").resolve())}
    expected = [code for repeat in range(3) for code in code_at.round_order(list(paths), repeat)]
    assert [(r["code"], r["repeat"]) for r in rows] == [(code, i // 5) for i, code in enumerate(expected)]
    assert calls == [(paths[code], True if code == "baseline" else None,
                      True if code in (pipeline.PACKED, packed_commit) else None) for code in expected]
