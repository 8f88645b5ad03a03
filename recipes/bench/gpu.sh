#!/usr/bin/env bash
# One GPU check: reference-size GAMER ("base") with bf16, fixed steps; training and recommendation
# throughput as JSON lines. Runs on a bare GPU image that has torch (no network): wheels of the
# transformers stack this package pins may be carried in .whl/ and are installed into .gpu_pkg/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install --quiet --no-deps --target .gpu_pkg/site .whl/*.whl
fi
mkdir -p .gpu_pkg/gamer_hf
ln -sfn "${PWD}/modeling" .gpu_pkg/gamer_hf/modeling  # gamer_hf.modeling is installed from modeling/
cp gamer_hf/__init__.py gamer_hf/registration.py .gpu_pkg/gamer_hf/
export PYTHONPATH="${PWD}/.gpu_pkg/site:${PWD}/.gpu_pkg:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
for preset in ${PRESETS:-base small}; do
  "$PY" recipes/bench/gpu_throughput.py --preset "$preset" --steps "${STEPS:-60}" --batch "${BATCH:-256}" --history 100
done
# Full-data comparison (retail_beh_mbht, every user, history 50; about 9 minutes). It needs the whole
# package and its data stack (datasets, pandas, scikit-learn, accelerate...: carry their wheels in
# .whl/ when the image lacks them) and the shared data folder: DATA_DIR or GAMER_HF_DATA_DIR.
DATA="${DATA_DIR:-${GAMER_HF_DATA_DIR:-}}"
mkdir -p .gpu_pkg/full/gamer_hf .gpu_pkg/engines
for entry in gamer_hf/*; do ln -sfn "${PWD}/${entry}" ".gpu_pkg/full/gamer_hf/$(basename "$entry")"; done
ln -sfn "${PWD}/modeling" .gpu_pkg/full/gamer_hf/modeling
ln -sfn "${PWD}/hub_cards" .gpu_pkg/full/gamer_hf/hub_cards
FULL_PATH="${PWD}/.gpu_pkg/site:${PWD}/.gpu_pkg/full:${PYTHONPATH:-}"
if [ -n "$DATA" ] && [ -d "$DATA/retail_beh_mbht" ]; then
  PYTHONPATH="$FULL_PATH" "$PY" recipes/bench/full_data_gpu.py --data-dir "$DATA" --out "${FULL_OUT:-recipes/bench/results/full_data_gpu}"
else
  echo "full_data_gpu.py skipped: set DATA_DIR to the folder holding retail_beh_mbht/" >&2
fi
# One-process FSDP and DeepSpeed ZeRO-2 launches of a short run (issue 14; not run on CPU: accelerate
# applies FSDP only over accelerator devices and `gamer-hf train` refuses such a launch there, and
# DeepSpeed on CPU JIT-compiles its shared-memory comm op first). Needs the full package like the
# comparison above; DeepSpeed also needs its wheel in .whl/. Each prints "saved the best model to".
if PYTHONPATH="$FULL_PATH" "$PY" -c "import datasets, accelerate" 2>/dev/null; then
  PYTHONPATH="$FULL_PATH" "$PY" -c "
from gamer_hf.data import prepare, generate_synthetic, SYNTHETIC_BEHAVIORS
from gamer_hf.semantic_ids import build_semantic_ids, save_semantic_ids
events, _ = generate_synthetic(num_users=400, num_items=300, seed=0)
prepared = prepare(events, behaviors=SYNTHETIC_BEHAVIORS, out='.gpu_pkg/engines/prepared', max_history=20, progress=False)
save_semantic_ids(build_semantic_ids(prepared.item_ids, method='cid', seed=0), '.gpu_pkg/engines/tokenizer',
                  behaviors=prepared.metadata['behaviors'])"
  for engine in ${ENGINES:-fsdp deepspeed_zero2}; do
    PYTHONPATH="$FULL_PATH" "$PY" -m accelerate.commands.launch --config_file "recipes/accelerate/${engine}.yaml" --num_processes 1 \
      -m gamer_hf.cli train --data .gpu_pkg/engines/prepared --tokenizer .gpu_pkg/engines/tokenizer \
      --output_dir ".gpu_pkg/engines/${engine}" --overwrite_output_dir true --preset small --max_steps 20 \
      --eval_steps 20 --bf16 true --disable_tqdm true || echo "${engine} launch FAILED" >&2
  done
else
  echo "FSDP / DeepSpeed launches skipped: datasets and accelerate are not importable" >&2
fi
