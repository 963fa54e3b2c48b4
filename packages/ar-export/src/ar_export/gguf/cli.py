"""`ar-gguf FOLDER OUT.gguf [--mix q4_k_m]` (also `python -m ar_export.gguf`): a checkpoint folder -> one GGUF file."""

from __future__ import annotations

import argparse
import sys

from ar_core.errors import ArError
from ar_core.presets import GGUF_MIXES

from .folder import convert_folder


def main(argv: list[str] | None = None) -> int:
    """Convert a float, ar, auto_round or GPTQ checkpoint folder to GGUF; errors print one line and exit 2."""
    parser = argparse.ArgumentParser(prog="ar-gguf", description="Write a checkpoint folder (config.json, "
                                     "safetensors, tokenizer.json) as a llama.cpp GGUF file, without transformers.")
    parser.add_argument("folder", help="model folder: float, ar / auto_round (GPTQ order) or GPTQ checkpoint")
    parser.add_argument("out", help="path of the .gguf file to write")
    parser.add_argument("--mix", default="q4_k_m", help=f"llama.cpp mix: {', '.join(sorted(GGUF_MIXES))}")
    args = parser.parse_args(argv)
    try:
        path = convert_folder(args.folder, args.out, args.mix)
    except ArError as exc:
        print(f"ar-gguf: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
