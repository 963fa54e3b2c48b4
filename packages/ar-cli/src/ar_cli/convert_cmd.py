"""`ar convert SRC DST`: re-store a quantized int checkpoint (GPTQ, AWQ, auto-round, compressed-tensors) in another
format with the exact integer codes, scales and zero points (ar_kernels.convert)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ar_core.errors import CheckpointError
from ar_core.registry import FORMATS

from .flags import UsageError, model_path


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `ar convert`."""
    p = sub.add_parser("convert", help="re-store a quantized checkpoint in another format, codes kept exactly",
                       allow_abbrev=False,
                       description="Convert the quantized int checkpoint SRC (GPTQ, AWQ, auto-round, "
                                   "compressed-tensors) to --format in DST without re-quantizing.")
    p.add_argument("src", help="quantized checkpoint directory")
    p.add_argument("dst", help="output directory (written atomically)")
    p.add_argument("--format", default="auto_round", help="target format (default auto_round; see `ar list formats`)")
    p.add_argument("--overwrite", action="store_true", help="replace DST when it exists")
    p.add_argument("--trust_remote_code", action="store_true", help="allow the model's own code from SRC")
    return p


def run(args: argparse.Namespace) -> int:
    """Check the format name, convert, and print where the checkpoint went."""
    if args.format.lower() not in FORMATS.known_names():
        raise UsageError(f"--format {args.format!r} is not a known format; one of {', '.join(FORMATS.known_names())}")
    if Path(args.dst).exists() and not args.overwrite:
        raise CheckpointError(f"DST {args.dst!r} exists; pass --overwrite to replace it")
    from ar_kernels import convert

    out = convert(model_path(args.src), args.dst, format=args.format.lower(), overwrite=args.overwrite,
                  trust_remote_code=args.trust_remote_code)
    print(f"converted {args.src} -> {out} ({args.format})")
    return 0
