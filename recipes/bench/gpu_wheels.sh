#!/usr/bin/env bash
# Fill what travels with a lent H200 session besides the repository (run here, where pip reaches the
# registry; the H200 image reaches nothing): .whl/ with exactly the wheels that image lacks for
# gamer_hf and recipes/bench/gpu.sh, and .gpu_data/ with the two datasets the session reads
# (../shared does not travel). Both folders are git-ignored and must be named in the run's `carry`.
#
# What the image lacks (KINDS.md's package list of 2026-11-17 against setup.py): transformers is
# 5.17 there, gamer_hf needs >= 5.24 (its tokenizers 0.23, huggingface_hub 1.33 and safetensors 0.8
# are new enough, so only transformers travels, with regex, which transformers >= 5.24 checks at
# import); datasets with dill and multiprocess, evaluate, pydantic with pydantic-core,
# annotated-types and typing-inspection are missing; for `gamer-hf serve`, fastapi (with
# opentelemetry-api), starlette and uvicorn (prometheus-client, httpx, anyio, h11 are there);
# deepspeed with hjson for the ZeRO-2 launch. DeepSpeed publishes only a source archive: it is built
# here into a pure-Python wheel (no compiled ops; DS_ACCELERATOR=cuda). pyarrow, pandas, fsspec,
# scikit-learn, scipy, matplotlib, accelerate, tqdm, pyyaml are in the image. duckdb (25 MB; only
# `prepare --engine duckdb` imports it, no step of gpu.sh does) travels only with WITH_DUCKDB=1.
# Versions are the ones installed here (what the tests passed with); deepspeed and hjson are pinned below.
#
#   GAMER_HF_DATA_DIR=/work/shared/data bash recipes/bench/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
DATA="${GAMER_HF_DATA_DIR:?set GAMER_HF_DATA_DIR to the folder holding retail_beh_mbht/ and retailrocket_cml/}"
DEEPSPEED=(deepspeed==0.19.8 hjson==3.1.0)  # not installed here (no GPU): pinned
LIMIT_MIB=60  # the device tool carries 64 MiB in all (tracked files, untracked ones, carried paths)
NAMES=(transformers regex datasets dill multiprocess evaluate pydantic pydantic_core annotated-types
       typing-inspection fastapi opentelemetry-api starlette uvicorn)
[ "${WITH_DUCKDB:-0}" = 1 ] && NAMES+=(duckdb)

for folder in .whl .gpu_data; do
  git check-ignore -q "$folder/x" || { echo "gpu_wheels.sh: $folder/ is not git-ignored; add it to .gitignore" >&2; exit 2; }
done
rm -rf .whl .gpu_data
mkdir -p .whl .gpu_data
specs=()
for name in "${NAMES[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) || {
    echo "gpu_wheels.sh: $name is not installed in $PY; pip install -e '.[test]' first" >&2; exit 2; }
  specs+=("$name==$version")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}" "${DEEPSPEED[1]}"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary=:all: -d "$build" "${DEEPSPEED[0]}"
DS_BUILD_OPS=0 DS_ACCELERATOR=cuda "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w .whl \
  "$build"/deepspeed-*.tar.gz
for dataset in retail_beh_mbht retailrocket_cml; do
  mkdir -p ".gpu_data/$dataset"
  cp "$DATA/$dataset/events.csv.gz" "$DATA/$dataset/meta.json" ".gpu_data/$dataset/"
done

ls -l .whl
travels=$({ git ls-files -z; git ls-files -z --others --exclude-standard; } | du -cb --files0-from=- | tail -1 | cut -f1)
carried=$(du -cb .whl .gpu_data | tail -1 | cut -f1)
total_mib=$(( (travels + carried) / 1048576 ))
echo "travels: repository $(( travels / 1048576 )) MiB + .whl and .gpu_data $(( carried / 1048576 )) MiB = ${total_mib} MiB (limit 64)"
if [ "$total_mib" -gt "$LIMIT_MIB" ]; then
  echo "gpu_wheels.sh: ${total_mib} MiB is over ${LIMIT_MIB} MiB; leave WITH_DUCKDB unset or clean untracked files" >&2
  exit 1
fi
