#!/usr/bin/env bash
# The GPU proof in one command (H100/H200, < 8 minutes): CUDA tests, kernel table, SignRound against auto-round
# 0.16.1, load + generate through our triton backend. Writes <out>/gpu_proof.json and <out>/gpu_proof.md.
#
#   bash benchmarks/gpu/run.sh [--out DIR] [--budget SECONDS] [--sections tests,kernels,signround,generate]
#   bash benchmarks/gpu/run.sh --dry --out /tmp/proof    # CPU, tiny shapes, triton interpreter (what CI runs)
#   bash benchmarks/gpu/run.sh --fetch-wheels [PYVER]     # on a networked machine: fill benchmarks/gpu/wheels/
#
# The GPU machine has torch, transformers and triton (and their dependencies) but no network. Everything else
# travels as wheels in benchmarks/gpu/wheels/ (git-ignored; carry it with the working tree), made by --fetch-wheels:
#   uv build --all-packages --wheel -o benchmarks/gpu/wheels          # ar-core ar-kernels ar-export ar-algos (+ the
#                                                                      # other workspace packages, unused here)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version PYVER --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 -d benchmarks/gpu/wheels <PINNED below>
# PINNED: auto-round 0.16.1 and what it, our packages and the CUDA tests need beyond torch/transformers/triton
# (versions as in uv.lock); PYVER is the GPU machine's Python (default: this machine's, e.g. 3.11).
# A full run first installs them offline into a venv that sees the system packages (benchmarks/gpu/.venv-gpu):
#   python3 -m pip install --no-index --find-links benchmarks/gpu/wheels ar-core ar-kernels ar-export ar-algos \
#       auto-round==0.16.1 pytest hypothesis
# (pip takes from the wheels only what the system does not already satisfy). --dry uses the workspace's .venv
# (scripts/setup.sh) when there is one, else python3, as it is.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHEELS="$HERE/wheels"
VENV="$HERE/.venv-gpu"
PINNED=(auto-round==0.16.1 accelerate==1.15.0 datasets==5.2.0 pyarrow==26.0.1 pandas==3.1.1 dill==0.4.1
        multiprocess==0.70.19 xxhash==4.1.0 python-dateutil==2.9.0.post0 six==1.17.0 requests==2.34.2
        certifi==2026.10.18 charset-normalizer==3.5.2 urllib3==2.8.0 psutil==7.2.2 py-cpuinfo==9.0.0 gguf==0.19.0
        pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 hypothesis==6.170.15 sortedcontainers==2.4.0)
NEEDED=(ar-core ar-kernels ar-export ar-algos auto-round==0.16.1 pytest hypothesis)

fetch_wheels() {
  local pyver="${1:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
  mkdir -p "$WHEELS"
  (cd "$HERE/../.." && uv build --all-packages --wheel -o "$WHEELS")
  python3 -m pip download --no-deps --only-binary=:all: --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "${PINNED[@]}"
  du -sh "$WHEELS"
}

install_wheels() {
  if [ ! -d "$WHEELS" ] || ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "no wheels in $WHEELS: using the packages already installed (see the header to fetch them)" >&2
    command -v python3
    return
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" "${NEEDED[@]}" >&2
  echo "$VENV/bin/python"
}

case "${1:-}" in
  --fetch-wheels) shift; fetch_wheels "$@"; exit ;;
esac
if [[ " $* " == *" --dry "* ]]; then
  PY="$HERE/../../.venv/bin/python"
  [ -x "$PY" ] || PY="$(command -v python3)"
else
  PY="$(install_wheels | tail -n 1)"
fi
exec "$PY" "$HERE/run.py" "$@"
