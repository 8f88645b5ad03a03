"""`gamer-hf train` in-process with a recipe, and a real two-process CPU run under `accelerate launch`."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from gamer_hf import GamerForCausalLM
from gamer_hf.cli import main
from gamer_hf.data.prepare import load_prepared
from gamer_hf.training import TRAINING_INFO_FILE

REPO = Path(__file__).resolve().parents[2]


def test_cli_trains_from_a_recipe_with_overriding_flags(prepared_dir, tokenizer_dir, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": str(prepared_dir), "tokenizer": str(tokenizer_dir), "output_dir": str(tmp_path / "from-recipe"),
        "preset": "tiny", "max_steps": 50, "per_device_train_batch_size": 16, "learning_rate": "3e-3",
        "disable_tqdm": True,
    }))
    out = tmp_path / "cli"
    assert main(["train", "--config", str(recipe), "--max_steps", "2", "--output_dir", str(out)]) == 0
    info = json.loads((out / TRAINING_INFO_FILE).read_text())
    assert info["results"]["global_step"] == 2  # the flag beat the recipe's 50
    assert info["training_arguments"]["learning_rate"] == 3e-3  # a YAML string still becomes a float
    printed = capsys.readouterr().out
    assert f"saved the best model to {out}" in printed
    assert f"{info['results']['best_eval_loss']:.4f}" in printed
    assert not (tmp_path / "from-recipe").exists()


def test_cli_says_where_kept_checkpoints_are(prepared_dir, tokenizer_dir, tmp_path, capsys):
    common = ["--data", str(prepared_dir), "--tokenizer", str(tokenizer_dir), "--preset", "tiny", "--max_steps", "2",
              "--eval_steps", "1", "--disable_tqdm", "true"]
    assert main(["train", *common, "--output_dir", str(tmp_path / "done")]) == 0
    assert "checkpoints" not in capsys.readouterr().out  # a completed run keeps none
    assert not (tmp_path / "done" / "checkpoints").exists()
    assert main(["train", *common, "--output_dir", str(tmp_path / "kept"), "--keep_checkpoints", "true"]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoints for resuming or inspection: {tmp_path / 'kept' / 'checkpoints'} (checkpoint-1, checkpoint-2)" \
        in printed


@pytest.mark.parametrize(("flag", "scored"), [([], True), (["--score_repeats", "false"], False)])
def test_the_cli_trains_with_or_without_scoring_repeats(prepared_dir, tokenizer_dir, tmp_path, monkeypatch, flag, scored):
    from gamer_hf.data import GamerCollator
    from gamer_hf.training import runner

    made = []
    monkeypatch.setattr(runner, "GamerCollator", lambda *args, **kwargs: made.append(kwargs) or GamerCollator(
        *args, **kwargs))
    assert main(["train", "--data", str(prepared_dir), "--tokenizer", str(tokenizer_dir), "--preset", "tiny",
                 "--max_steps", "1", "--disable_tqdm", "true", "--output_dir", str(tmp_path / "out"), *flag]) == 0
    assert [kwargs["score_repeats"] for kwargs in made] == [scored]
    assert json.loads((tmp_path / "out" / TRAINING_INFO_FILE).read_text())["training_arguments"]["score_repeats"] is scored


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Run under `accelerate launch`: records the training rows each process collates, then trains through the CLI.
RECORD_ROWS = """
import json, os, sys
from gamer_hf.cli import main
from gamer_hf.data.prepare import load_prepared
from gamer_hf.data.collator import GamerCollator

seen = open(os.path.join(sys.argv[1], f"rows-{os.environ['RANK']}.jsonl"), "w")
collate = GamerCollator.__call__

def recording(self, rows):
    rows = rows.to_pylist() if hasattr(rows, "to_pylist") else rows  # training batches come as Arrow tables
    seen.writelines(json.dumps([row["user_id"], *row["items"]]) + "\\n" for row in rows if "items" in row)
    seen.flush()
    return collate(self, rows)

GamerCollator.__call__ = recording
raise SystemExit(main(sys.argv[2:]))
"""


def test_two_cpu_processes_under_accelerate_launch_train_on_disjoint_shards(prepared_dir, tokenizer_dir, tmp_path):
    out, script = tmp_path / "ddp", tmp_path / "record_rows.py"
    script.write_text(RECORD_ROWS)
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "recipes" / "accelerate" / "cpu_2proc.yaml"),
        "--num_processes", "2", "--main_process_port", str(_free_port()),
        str(script), str(tmp_path), "train",
        "--data", str(prepared_dir), "--tokenizer", str(tokenizer_dir), "--output_dir", str(out),
        "--preset", "tiny", "--num_train_epochs", "1", "--per_device_train_batch_size", "16",
        "--measure_step_time", "false", "--logging_steps", "1", "--disable_tqdm", "false",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("saved the best model to") == 1  # only the main process reports
    assert done.stderr.count("training plan") == 1 and "x 2 processes)" in done.stderr  # and announces the plan

    train = load_prepared(prepared_dir).splits["train"]
    rows = [[tuple(json.loads(line)) for line in (tmp_path / f"rows-{rank}.jsonl").read_text().splitlines()]
            for rank in (0, 1)]
    share = len(train) // 2
    assert [len(seen) for seen in rows] == [share, share]  # one epoch: every row of its shard once, equal shares
    assert not set(rows[0]) & set(rows[1])  # the two processes read disjoint rows
    assert set(rows[0]) | set(rows[1]) <= {(row["user_id"], *row["items"]) for row in train}

    info = json.loads((out / TRAINING_INFO_FILE).read_text())
    assert info["world_size"] == 2 and info["global_batch_size"] == 32
    assert info["results"]["global_step"] == math.ceil(share / 16) and info["results"]["best_eval_loss"] is not None
    assert not (out / "checkpoints").exists()  # the completed run's checkpoints were pruned once, by the main process
    assert not list(tmp_path.glob(".ddp.*"))  # one publish: no staging folder left behind
    assert isinstance(AutoModelForCausalLM.from_pretrained(out), GamerForCausalLM)
