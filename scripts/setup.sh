#!/usr/bin/env bash
# Install the workspace (all packages, dev tools, offline assets, consumers) from the committed uv.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_PYTHON_DOWNLOADS=never UV_PYTHON="${UV_PYTHON:-python3.11}"
uv sync --locked --all-packages --group consumers
