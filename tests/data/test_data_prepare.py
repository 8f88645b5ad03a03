"""prepare(): atomic save, faithful reload, metadata; the `gamer-hf prepare` command end to end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gamer_hf.cli import main
from gamer_hf.data import generate_synthetic, load_prepared, prepare, write_synthetic
from gamer_hf.data.prepare import STALE_AFTER_S, clean_stale_temps
from gamer_hf.errors import ConfigurationError

METADATA_KEYS = {
    "format_version", "source", "format", "protocol", "behaviors", "target_behavior", "time_resolution", "sessions",
    "max_history", "augment_copies", "seed", "k_core", "min_user_events", "num_users", "num_items", "num_events",
    "events_per_behavior", "num_sessions", "splits", "drop_report", "id_maps", "items_file", "item_index_file",
    "timestamps",
}  # fmt: skip


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events, items = generate_synthetic(num_users=150, num_items=120, seed=1)
    return write_synthetic(tmp_path_factory.mktemp("raw") / "synthetic", events, items)


def test_save_and_load_round_trip(tmp_path: Path, synthetic_folder: Path) -> None:
    out = tmp_path / "prepared"
    data = prepare(synthetic_folder, out=out, max_history=20, augment_copies=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no temporary folder left behind
    loaded = load_prepared(out)
    assert loaded.metadata == json.loads(json.dumps(data.metadata))
    assert set(loaded.metadata) == METADATA_KEYS
    for split in ("train", "validation", "test"):
        assert loaded.splits[split].to_list() == data.splits[split].to_list()
    assert loaded.item_ids == data.item_ids and len(loaded.item_ids) == data.metadata["num_items"]
    assert loaded.user_ids == data.user_ids
    assert set(loaded.items["item_id"]) == set(data.item_ids)
    assert loaded.behaviors.levels == {"click": 0, "cart": 1, "buy": 2}
    stats = data.metadata["splits"]
    assert stats["train"]["rows"] == data.splits["train"].num_rows
    assert stats["test"]["cases"] == data.splits["test"].num_rows
    assert sum(stats["test"]["cases_per_behavior"].values()) == stats["test"]["cases"]
    assert sum(data.metadata["events_per_behavior"].values()) == data.metadata["num_events"]


def test_overwrite_replaces_a_prepared_folder_but_not_other_folders(tmp_path: Path, synthetic_folder: Path) -> None:
    out = tmp_path / "prepared"
    prepare(synthetic_folder, out=out, max_history=5, progress=False)
    prepare(synthetic_folder, out=out, max_history=7, progress=False)
    assert load_prepared(out).metadata["max_history"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="not a prepared-data folder"):
        prepare(synthetic_folder, out=precious, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_failed_save_leaves_nothing(tmp_path: Path, synthetic_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("datasets.DatasetDict.save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        prepare(synthetic_folder, out=tmp_path / "prepared", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_augmentation_is_reproducible(synthetic_folder: Path) -> None:
    first = prepare(synthetic_folder, augment_copies=2, seed=5, progress=False).splits["train"]
    again = prepare(synthetic_folder, augment_copies=2, seed=5, progress=False).splits["train"]
    other = prepare(synthetic_folder, augment_copies=2, seed=6, progress=False).splits["train"]
    assert first.to_list() == again.to_list()
    assert first.to_list() != other.to_list()


def test_cli_prepare(tmp_path: Path, synthetic_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prepared"
    code = main(["prepare", "--events", str(synthetic_folder), "--out", str(out), "--max_history", "15",
                 "--augment_copies", "1", "--session_gap_minutes", "45", "--no_progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    metadata = load_prepared(out).metadata
    assert metadata["max_history"] == 15 and metadata["augment_copies"] == 1
    assert metadata["sessions"] == {"method": "gap", "gap_minutes": 45.0}
    assert f"users         {metadata['num_users']:,}" in printed
    assert f"sessions      {metadata['num_sessions']:,}" in printed
    assert f"test          {metadata['splits']['test']['cases']:,} cases" in printed
    assert "drops: none" in printed


def test_cli_reports_validation_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,behavior,timestamp\nu,i,click,1\nu,j,like,2\n")
    argv = ["prepare", "--events", str(events), "--behaviors", "click:0,buy:1", "--out", str(tmp_path / "o"),
            "--no_progress"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert str(events) in error and "'behavior'" in error and "row 1" in error and "'like'" in error
    assert not (tmp_path / "o").exists()
    assert main(argv + ["--on_invalid", "drop", "--protocol", "loo", "--min_user_events", "1"]) == 0
    assert "dropped 1 (behavior not in the level table" in capsys.readouterr().out


def test_cli_recipe_file(tmp_path: Path, synthetic_folder: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"events: {synthetic_folder}\nprotocol: loo\nmax_history: 9\nprogress: false\n")
    assert main(["prepare", "--config", str(recipe), "--out", str(tmp_path / "out")]) == 0
    assert load_prepared(tmp_path / "out").metadata["protocol"] == "loo"


@pytest.mark.slow
def test_console_script(tmp_path: Path, synthetic_folder: Path) -> None:
    script = Path(sys.executable).with_name("gamer-hf")
    if not script.exists():
        pytest.skip("the gamer-hf console script is not installed (pip install -e .)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    argv = [str(script), "prepare", "--events", str(synthetic_folder), "--out", str(tmp_path / "o"), "--no-progress",
            "--max-history", "10"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "saved to" in result.stdout and (tmp_path / "o" / "metadata.json").is_file()
    shutil.rmtree(tmp_path / "o")


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited (ids are not reused this quickly)."""
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def _temp(parent: Path, kind: str, pid: int, *, age_s: float = 0.0) -> Path:
    path = parent / f".prepared.prepare-{kind}-{socket.gethostname()}-{pid}-x{int(age_s)}"
    path.mkdir()
    (path / "splits").mkdir()
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_stale_temps_of_killed_runs_are_cleaned_and_nothing_else(tmp_path: Path, synthetic_folder: Path,
                                                                 dead_pid: int) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            killed = _temp(tmp_path, "tmp", dead_pid)
            running = _temp(tmp_path, "tmp", alive.pid)
            abandoned = _temp(tmp_path, "tmp", alive.pid, age_s=STALE_AFTER_S + 60)
            other_output = tmp_path / f".other.prepare-tmp-{socket.gethostname()}-{dead_pid}-abc123"
            other_output.mkdir()
            foreign = tmp_path / ".prepared.backup"
            foreign.mkdir()
            prepare(synthetic_folder, out=tmp_path / "prepared", progress=False)
            left = {path.name for path in tmp_path.iterdir()}
        finally:
            alive.kill()
    assert killed.name not in left and abandoned.name not in left
    assert {running.name, other_output.name, foreign.name, "prepared"} <= left


def test_a_previous_output_caught_mid_swap_is_put_back(tmp_path: Path, synthetic_folder: Path, dead_pid: int) -> None:
    prepare(synthetic_folder, out=tmp_path / "prepared", max_history=5, progress=False)
    old = _temp(tmp_path, "old", dead_pid)
    os.replace(tmp_path / "prepared", old / "prepared")  # killed between the two renames of a swap
    assert clean_stale_temps(tmp_path / "prepared") == [old]
    assert load_prepared(tmp_path / "prepared").metadata["max_history"] == 5
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prepared"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_prepared_folders_follow_the_umask(tmp_path: Path, synthetic_folder: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        out = prepare(synthetic_folder, out=tmp_path / "prepared", progress=False) and tmp_path / "prepared"
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((out / "metadata.json").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_output_on_a_file_is_refused_before_any_work(tmp_path: Path, synthetic_folder: Path, where: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "prepared"
    monkeypatch.setattr(sys.modules["gamer_hf.data.prepare"], "read_events", lambda *a, **k: pytest.fail("read first"))
    with pytest.raises(ConfigurationError, match=f"output {out} .*file"):
        prepare(synthetic_folder, out=out, progress=False)
    assert blocker.read_text() == "keep me"
