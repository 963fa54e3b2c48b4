#!/usr/bin/env bash
# The GPU proof in one command (H100/H200, < 8 minutes): CUDA tests, kernel table, SignRound against auto-round
# 0.16.1, load + generate through our triton backend. Writes <out>/gpu_proof.json and <out>/gpu_proof.md.
#
#   bash benchmarks/gpu/run.sh [--out DIR] [--budget SECONDS] [--sections tests,kernels,signround,generate]
#   bash benchmarks/gpu/run.sh --dry --out /tmp/proof    # CPU, tiny shapes, triton interpreter (what CI runs)
#   bash benchmarks/gpu/run.sh --fetch-wheels [PYVER]     # on a networked machine: fill benchmarks/gpu/wheels/
#
# The GPU machine has torch, transformers and triton but no network. Everything else travels as wheels in
# benchmarks/gpu/wheels/ (git-ignored: name it in the device call's carry; about 3 MB), made by --fetch-wheels:
#   for p in ar-core ar-kernels ar-export ar-algos; do uv build --package $p --wheel -o benchmarks/gpu/wheels; done
#   python3 -m pip download --no-deps --only-binary=:all: --python-version PYVER --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d benchmarks/gpu/wheels auto-round==0.16.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0
# PYVER is the GPU machine's Python (default 3.12, the H200 image's). The pinned list is what auto-round, our packages
# and the CUDA tests need that the lent H200 image lacks (it has accelerate, pandas, pyarrow, xxhash, psutil,
# py-cpuinfo, requests, pytest, hypothesis, ...; /work/.library/device/KINDS.md); versions as in uv.lock.
# A full run installs them offline, without dependency resolution, into a fresh folder on PYTHONPATH:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target SITE benchmarks/gpu/wheels/*.whl
# --dry uses the workspace's .venv (scripts/setup.sh) when there is one, else python3, as it is.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHEELS="$HERE/wheels"
OURS=(ar-core ar-kernels ar-export ar-algos)
PINNED=(auto-round==0.16.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0)

fetch_wheels() {
  local pyver="${1:-3.12}"
  mkdir -p "$WHEELS"
  for p in "${OURS[@]}"; do (cd "$HERE/../.." && uv build --package "$p" --wheel -o "$WHEELS"); done
  python3 -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${PINNED[@]}"
  du -sh "$WHEELS"
}

install_wheels() {
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $WHEELS: using the packages python3 already has (see this script's header)" >&2
    return
  fi
  SITE="$(mktemp -d)"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl >&2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
}

if [ "${1:-}" = "--fetch-wheels" ]; then
  shift
  fetch_wheels "$@"
  exit
fi
PY=python3
if [[ " $* " == *" --dry "* ]]; then
  [ -x "$HERE/../../.venv/bin/python" ] && PY="$HERE/../../.venv/bin/python"
else
  install_wheels
fi
exec "$PY" "$HERE/run.py" "$@"
