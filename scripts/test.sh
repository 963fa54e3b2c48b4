#!/usr/bin/env bash
# The project's test command: install from uv.lock, then the fast suite, then the slow (real-model) suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "== fast tests"
uv run --no-sync pytest -q -m "not slow" "$@"
echo "== slow tests"
rc=0; uv run --no-sync pytest -q -m slow "$@" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
