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
if [ -n "$DATA" ] && [ -d "$DATA/retail_beh_mbht" ]; then
  mkdir -p .gpu_pkg/full/gamer_hf
  for entry in gamer_hf/*; do ln -sfn "${PWD}/${entry}" ".gpu_pkg/full/gamer_hf/$(basename "$entry")"; done
  ln -sfn "${PWD}/modeling" .gpu_pkg/full/gamer_hf/modeling
  ln -sfn "${PWD}/hub_cards" .gpu_pkg/full/gamer_hf/hub_cards
  PYTHONPATH="${PWD}/.gpu_pkg/site:${PWD}/.gpu_pkg/full:${PYTHONPATH:-}" \
    "$PY" recipes/bench/full_data_gpu.py --data-dir "$DATA" --out "${FULL_OUT:-recipes/bench/results/full_data_gpu}"
else
  echo "full_data_gpu.py skipped: set DATA_DIR to the folder holding retail_beh_mbht/" >&2
fi
