"""recipes/bench/gpu.sh, the one command of a lent GPU session, cannot rot unseen: its plan (GPU_PLAN=1) runs
the steps in the agreed order within the device tool's 10-minute limit, and every command it would run is
accepted by the script or CLI it calls (flags parsed by their own parsers, files and configs present)."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from gamer_hf.cli import parse_command_args
from gamer_hf.training import TrainArguments

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "recipes" / "bench" / "gpu.sh"
STEPS = ["full_data", "throughput", "fsdp", "deepspeed", "serve"]
PY = "PYTHON_UNDER_TEST"


def plan(**env: str) -> tuple[list[str], dict[str, list[list[str]]]]:
    """The step names in order, and each step's commands as argument lists."""
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PATH": os.environ["PATH"], "GPU_PLAN": "1", "PYTHON": PY, **env})
    assert done.returncode == 0, done.stderr
    order, commands = [], {}
    for line in done.stdout.splitlines()[1:]:
        if not line.startswith(" "):
            order.append(line.split(" (")[0])
            commands[order[-1]] = []
        elif line.startswith(f"    {PY} ") and not line.startswith(f"    {PY} -c "):  # inline code: no flags
            commands[order[-1]].append(shlex.split(line))
    return order, commands


def parsed(bench_script, command: list[str]) -> argparse.Namespace:
    """What the bench script's own parser makes of the command's flags (it errors on an unknown one)."""
    return bench_script(Path(command[1]).name).parse_args(command[2:])


def test_the_script_parses_and_knows_its_knobs():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    bad = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env={
        "PATH": os.environ["PATH"], "GPU_STEPS": "full_data bogus"}, cwd=ROOT)
    assert bad.returncode == 2 and "unknown step 'bogus'" in bad.stderr


@pytest.mark.parametrize("dry", [False, True], ids=["gpu", "cpu-dry-run"])
def test_the_plan_runs_every_step_in_order_with_flags_its_scripts_accept(bench_script, dry):
    order, commands = plan(**({"GPU_DRY_RUN": "1"} if dry else {}))
    assert order == STEPS
    device = "cpu" if dry else "cuda"
    full_data = parsed(bench_script, commands["full_data"][0])
    assert full_data.tiny is dry and full_data.device == device
    throughput = [parsed(bench_script, command) for command in commands["throughput"]]
    assert [t.preset for t in throughput] == (["tiny"] if dry else ["base", "small"])
    assert all(t.device == device and t.bf16 is not dry for t in throughput)
    serve = parsed(bench_script, commands["serve"][0])
    assert serve.device == device and 32 in serve.concurrency and serve.no_write  # RESULTS.md stays as it is
    for engine, config in (("fsdp", "fsdp"), ("deepspeed", "deepspeed_zero2")):
        train = next(c for c in commands[engine] if "train" in c)
        launched = "accelerate.commands.launch" in train
        assert launched is not dry
        if launched:
            assert (ROOT / train[train.index("--config_file") + 1]) == ROOT / "recipes" / "accelerate" / f"{config}.yaml"
        args = parse_command_args(TrainArguments, train[train.index("train") + 1:])
        assert args.use_cpu is dry and args.bf16 is not dry and args.max_steps > 0


def test_the_session_fits_one_device_command_and_says_how_to_run_it():
    text = SCRIPT.read_text()
    caps = re.search(r"declare -A CAP=\(([^)]*)\)", text).group(1)
    later = sum(int(v) for v in re.findall(r"=(\d+)", caps))
    session = int(re.search(r'GPU_SESSION_SECONDS:-(\d+)', text).group(1))
    assert later < session <= 570  # the run's timeout_s is 600: transfers and the kill grace fit beside
    assert 'carry:     [".whl", ".gpu_data"]' in text and "timeout_s: 600" in text
    for folder in (".whl", ".gpu_data"):  # carried, so they must not travel twice as untracked files
        assert subprocess.run(["git", "check-ignore", "-q", f"{folder}/x"], cwd=ROOT).returncode == 0
    assert (ROOT / "recipes" / "bench" / "gpu_wheels.sh").is_file()
