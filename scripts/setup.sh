#!/usr/bin/env bash
# Install the workspace (all packages, dev tools, offline assets, consumers) from the committed uv.lock.
# Bootstraps uv 0.13.9 into .ci-tools/ when it is not on PATH. Source it to keep PATH: `. scripts/setup.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never UV_PYTHON="${UV_PYTHON:-python3.11}"
if ! command -v uv >/dev/null 2>&1; then
  if [ ! -x .ci-tools/bin/uv ]; then
    python3 -m venv .ci-tools
    .ci-tools/bin/python -m pip install -q "uv==0.13.9"
  fi
  export PATH="$PWD/.ci-tools/bin:$PATH"
fi
# Bytecode is compiled at install: Python may be told not to write it (PYTHONDONTWRITEBYTECODE), and then every
# process would recompile torch and transformers from source (an import of transformers costs twice the CPU).
uv sync --locked --all-packages --group consumers --compile-bytecode
