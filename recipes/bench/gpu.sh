#!/usr/bin/env bash
# Everything a lent GPU session runs, as one command that ends within ~9.5 minutes (the device tool
# allows 10 per command and 15 of device time per session, machine start included). In this order,
# each step under its own `timeout` (a step that fails or overruns is reported, the next one runs):
#   full_data   issue 16's full-data comparison (full_data_gpu.py: retail_beh_mbht, every user,
#               history 50, the table naming the card); gets the time the later steps leave
#   throughput  bf16 training / recommend() throughput of the base and small presets (gpu_throughput.py)
#   fsdp        a one-process FSDP2 launch (recipes/accelerate/fsdp.yaml) of a 20-step small-preset
#               run; the published model must load with load_checkpoint
#   deepspeed   the same under DeepSpeed ZeRO-2 (recipes/accelerate/deepspeed_zero2.yaml)
#   serve       issue 13's serve_load.py --device cuda, short (concurrency 1 and 32, one repeat)
# Outputs go to $OUT (the device tool brings back at most 8 files): summary.txt, session.log (every
# step's output), full_data_gpu.md, quality.json, throughput.jsonl, serve_load.txt; the summary is
# printed last.
#
# Prepare here (pip reaches the registry; the H200 image reaches nothing), from the checkout the
# session's device tool sends (the lead's /work/main):
#   GAMER_HF_DATA_DIR=/work/shared/data bash recipes/bench/gpu_wheels.sh   # .whl/ and .gpu_data/, ~27 MiB
# then the device tool's run, ready to paste:
#   command:   bash recipes/bench/gpu.sh
#   carry:     [".whl", ".gpu_data"]
#   timeout_s: 600
# Here, on CPU, the same steps with tiny sizes (FSDP / DeepSpeed launches skipped: accelerate applies
# them only over GPUs; their train command runs without the launcher instead), and the plan alone:
#   GPU_DRY_RUN=1 OMP_NUM_THREADS=1 PYTHON=.venv/bin/python GAMER_HF_DATA_DIR=/work/shared/data bash recipes/bench/gpu.sh
#   GPU_PLAN=1 bash recipes/bench/gpu.sh
# Knobs: GPU_STEPS (a subset, in the order above), GPU_SESSION_SECONDS (default 550: setup and all
# steps; 1800 with GPU_DRY_RUN, whose caps are three times these), PYTHON (default python3), OUT, GPU_WORK (scratch, default /tmp/gamer_gpu_session),
# GPU_DATA_DIR (default .gpu_data, else $GAMER_HF_DATA_DIR).
set -uo pipefail  # no -e: a failed step is reported and the next one runs
cd "$(dirname "$0")/../.."

export PY="${PYTHON:-python3}" DRY="${GPU_DRY_RUN:-0}" PLAN="${GPU_PLAN:-0}" PYTHONUNBUFFERED=1
export OUT_DIR="${OUT:-runs/gpu_session}" WORK="${GPU_WORK:-${TMPDIR:-/tmp}/gamer_gpu_session}"
if [ -z "${GPU_DATA_DIR:-}" ] && [ -d .gpu_data ]; then GPU_DATA_DIR=.gpu_data; fi
export DATA="${GPU_DATA_DIR:-${GAMER_HF_DATA_DIR:-}}"
STEPS=(full_data throughput fsdp deepspeed serve)
declare -A CAP=([throughput]=70 [fsdp]=50 [deepspeed]=70 [serve]=90)  # full_data: what is left
SELECTED=" ${GPU_STEPS:-${STEPS[*]}} "
SESSION_SECONDS="${GPU_SESSION_SECONDS:-550}"
if [ "${GPU_DRY_RUN:-0}" = 1 ]; then  # a shared 2-core CPU: three times the caps, half an hour in all
  for key in "${!CAP[@]}"; do CAP[$key]=$(( CAP[$key] * 3 )); done
  SESSION_SECONDS="${GPU_SESSION_SECONDS:-1800}"
fi
for name in $SELECTED; do
  [[ " ${STEPS[*]} " == *" $name "* ]] || { echo "gpu.sh: unknown step '$name' in GPU_STEPS (steps: ${STEPS[*]})" >&2; exit 2; }
done
[ "$DRY" = 1 ] && DEVICE=cpu || DEVICE=cuda
export DEVICE
exec 3>&1  # the plan prints here, whatever a step redirects

# Run a command, or with GPU_PLAN=1 only print it (one line, shell-quoted).
cmd() { if [ "$PLAN" = 1 ]; then { printf '   '; printf ' %q' "$@"; echo; } >&3; else "$@"; fi; }

step_full_data() {
  local size=() ; [ "$DRY" = 1 ] && size=(--tiny)
  cmd "$PY" recipes/bench/full_data_gpu.py --device "$DEVICE" --data-dir "$DATA" --work-dir "$WORK/full_data" \
    --out "$WORK/full_data_out" "${size[@]}"
}

step_throughput() {
  local presets=(base small) size=(--steps 30 --batch 256 --history 100 --device cuda --bf16)
  [ "$DRY" = 1 ] && presets=(tiny) size=(--steps 2 --warmup 1 --batch 4 --history 8 --items 300 --levels 3
    --codebook 32 --rec-batch 4 --rec-history 8 --stock-batch 2 --device cpu --no-bf16)
  for preset in "${presets[@]}"; do
    cmd "$PY" recipes/bench/gpu_throughput.py --preset "$preset" "${size[@]}" >> "$OUT_DIR/throughput.jsonl" || return
  done
}

engine_data() {  # a small synthetic prepared dataset and tokenizer for the launches
  [ -f "$WORK/engines/tokenizer/tokenizer_config.json" ] && return
  cmd "$PY" -c "
import sys
from gamer_hf.data import SYNTHETIC_BEHAVIORS, generate_synthetic, prepare
from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
events, _ = generate_synthetic(num_users=400, num_items=300, seed=0)
prepared = prepare(events, behaviors=SYNTHETIC_BEHAVIORS, out=sys.argv[1] + '/prepared', max_history=20, progress=False)
save_semantic_ids(build_semantic_ids(prepared.item_ids, method='cid', seed=0), sys.argv[1] + '/tokenizer',
                  behaviors=prepared.metadata['behaviors'])" "$WORK/engines"
}

launch() {  # $1: fsdp | deepspeed_zero2
  engine_data || return
  local out="$WORK/engines/$1" steps=20 launcher=(-m accelerate.commands.launch --config_file
    "recipes/accelerate/$1.yaml" --num_processes 1 -m gamer_hf.cli) flags=(--bf16 true)
  if [ "$DRY" = 1 ]; then
    echo "$1: the launch under recipes/accelerate/$1.yaml is skipped on CPU (accelerate applies FSDP and" \
         "DeepSpeed only over GPUs); its train command runs without the launcher"
    launcher=(-m gamer_hf.cli) steps=2 flags=(--use_cpu true)
  fi
  cmd "$PY" "${launcher[@]}" train --data "$WORK/engines/prepared" --tokenizer "$WORK/engines/tokenizer" \
    --output_dir "$out" --overwrite_output_dir true --preset small --max_steps "$steps" --eval_steps "$steps" \
    --disable_tqdm true "${flags[@]}" || return
  cmd "$PY" -c "import sys; from gamer_hf.checkpoint import load_checkpoint; load_checkpoint(sys.argv[1]);
print('$1: the published model', sys.argv[1], 'loads')" "$out"
}
step_fsdp() { launch fsdp; }
step_deepspeed() {
  if [ "$DRY" != 1 ] && [ "$PLAN" != 1 ] && ! "$PY" -c "import deepspeed" 2>/dev/null; then
    echo "deepspeed is not importable: carry its wheel (recipes/bench/gpu_wheels.sh)"; return 3
  fi
  launch deepspeed_zero2
}

step_serve() {
  local size=(--count 128 --max-seconds 8)
  [ "$DRY" = 1 ] && size=(--count 12 --max-seconds 5)
  export GAMER_HF_DATA_DIR="$DATA"  # build_checkpoint prepares retailrocket_cml from it
  cmd "$PY" recipes/bench/serve_load.py --device "$DEVICE" --work "$WORK/serve" \
    --train-steps 0 --concurrency 1 32 --repeats 1 --no-write "${size[@]}" > "$OUT_DIR/serve_load.txt"
}
export -f cmd step_full_data step_throughput engine_data launch step_fsdp step_deepspeed step_serve

if [ "$PLAN" = 1 ]; then
  OUT_DIR=$(mktemp -d)
  trap 'rm -rf "$OUT_DIR"' EXIT
  echo "device $DEVICE, data ${DATA:-(none)}, session ${SESSION_SECONDS}s"
  for name in "${STEPS[@]}"; do
    [[ "$SELECTED" == *" $name "* ]] || continue
    echo "$name (limit: ${CAP[$name]:-what the later steps leave}${CAP[$name]:+ s}):"
    "step_$name" > /dev/null
  done
  exit 0
fi

[ -n "$DATA" ] && [ -d "$DATA/retail_beh_mbht" ] || {
  echo "gpu.sh: no data: run recipes/bench/gpu_wheels.sh (fills .gpu_data/) or set GPU_DATA_DIR" >&2; exit 2; }
START=$(date +%s)
mkdir -p "$OUT_DIR" "$WORK"
LOG="$OUT_DIR/session.log" SUMMARY="$OUT_DIR/summary.txt"
: > "$LOG"; : > "$SUMMARY"; rm -f "$OUT_DIR/throughput.jsonl"

# Setup: the carried wheels shadow the image's packages; gamer_hf itself is installed into the image's
# Python (serve_load.py starts the `gamer-hf` script beside that interpreter).
{
  echo "===== setup"; date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  if [ "$DRY" != 1 ] && compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  fi
} >> "$LOG" 2>&1
[ "$DRY" != 1 ] && [ -d /tmp/site ] && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import gamer_hf, sys, pathlib; assert pathlib.Path(sys.executable).with_name('gamer-hf').exists()" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile . >> "$LOG" 2>&1 \
    || echo "setup: pip install of gamer_hf FAILED (see session.log)" | tee -a "$SUMMARY"
fi
"$PY" - >> "$LOG" 2>&1 <<'EOF'
import importlib.metadata as m, sys
import torch
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
names = ["transformers", "tokenizers", "huggingface_hub", "accelerate", "datasets", "pyarrow", "pandas", "numpy",
         "safetensors", "deepspeed", "fastapi", "uvicorn", "httpx", "prometheus_client", "gamer-hf"]
print(", ".join(f"{n} {m.version(n) if any(True for _ in m.distributions(name=n)) else '-'}" for n in names))
EOF
if [ "$DRY" != 1 ] && ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "gpu.sh: no CUDA device (GPU_DRY_RUN=1 runs the CPU smoke version)" | tee -a "$SUMMARY" >&2; exit 2
fi
printf '%-11s %-30s %6s %6s\n' step status seconds limit >> "$SUMMARY"

for name in "${STEPS[@]}"; do
  [[ "$SELECTED" == *" $name "* ]] || continue
  reserve=0
  after=0
  for later in "${STEPS[@]}"; do
    [ "$later" = "$name" ] && { after=1; continue; }
    [ "$after" = 1 ] && [[ "$SELECTED" == *" $later "* ]] && reserve=$(( reserve + ${CAP[$later]} ))
  done
  left=$(( SESSION_SECONDS - ($(date +%s) - START) - reserve ))
  limit=${CAP[$name]:-$left}
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    printf '%-11s %-30s %6s %6s\n' "$name" "skipped: no time left" - "$limit" >> "$SUMMARY"; continue
  fi
  echo "===== $name (limit ${limit}s) $(date -u +%T)" >> "$LOG"
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" bash -c "step_$name" >> "$LOG" 2>&1
  rc=$?
  seconds=$(( $(date +%s) - begin ))
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  [ "$DRY" = 1 ] && { [ "$name" = fsdp ] || [ "$name" = deepspeed ]; } && [ $rc = 0 ] && status="ok (launch skipped on CPU)"
  printf '%-11s %-30s %6s %6s\n' "$name" "$status" "$seconds" "$limit" >> "$SUMMARY"
  if [ "$name" = full_data ]; then  # quality.json is written after every model: partial results come back too
    if [ ! -f "$WORK/full_data_out/full_data_gpu.md" ] && [ -f "$WORK/full_data_out/quality.json" ]; then
      timeout 60 "$PY" recipes/bench/full_data_gpu.py --render --device "$DEVICE" --out "$WORK/full_data_out" \
        $([ "$DRY" = 1 ] && echo --tiny) >> "$LOG" 2>&1
    fi
    for file in full_data_gpu.md quality.json; do
      [ -f "$WORK/full_data_out/$file" ] && cp "$WORK/full_data_out/$file" "$OUT_DIR/"
    done
  fi
done

{
  echo "total $(( $(date +%s) - START ))s of ${SESSION_SECONDS}s; device $DEVICE"
  grep -m2 -E "^(3\.|torch|transformers )" "$LOG"
  echo; echo "## full_data_gpu.md"; cat "$OUT_DIR/full_data_gpu.md" 2>/dev/null || echo "(not written)"
  echo; echo "## throughput.jsonl"; cat "$OUT_DIR/throughput.jsonl" 2>/dev/null || echo "(not written)"
  echo; echo "## engines"; grep -E "saved the best model|published model|Error|error:" "$LOG" | grep -v "^ " | tail -8
  echo; echo "## serve_load.txt"; grep -E "^- " "$OUT_DIR/serve_load.txt" 2>/dev/null || echo "(no summary lines)"
} >> "$SUMMARY"
cat "$SUMMARY"
