"""`ar quantize MODEL --avg_bits N --options A,B,...`: AutoScheme (ar_algos.autoscheme) picks a scheme per layer
under the average-bits budget; the resulting layer_config is then quantized by AutoRound like any other."""

from __future__ import annotations

import argparse
from typing import Any

from ar_core.errors import ArError

from .flags import UsageError, relaxed_json

# Flags that set the default scheme, which the AutoScheme options replace.
SCHEME_FLAGS = ("scheme", "bits", "group_size", "data_type", "act_bits")


def check_autoscheme(args: argparse.Namespace, user_set: set[str], mllm: bool) -> None:
    """Refuse flag combinations AutoScheme cannot honour; --options is required with --avg_bits."""
    if args.avg_bits is None:
        if args.options is not None:
            raise UsageError("--options lists AutoScheme candidates and needs --avg_bits")
        for flag in ("ignore_scale_zp_bits", "shared_layers"):
            if getattr(args, flag):
                raise UsageError(f"--{flag} only applies with --avg_bits")
        return
    if args.options is None:
        raise UsageError(f"--avg_bits {args.avg_bits} needs --options, the candidate schemes "
                         "(e.g. --options W2A16,W4A16,W8A16)")
    given = [f for f in SCHEME_FLAGS if f in user_set] + (["asym"] if args.asym else [])
    if given:
        raise UsageError(f"--{given[0]} contradicts --avg_bits: AutoScheme chooses each layer's scheme from "
                         f"--options {args.options}")
    if mllm:
        raise UsageError("--avg_bits with a vision-language model is not available yet (AutoScheme scores "
                         "causal language models)")


def make_search(args: argparse.Namespace, device: Any):
    """The AutoScheme of the flags (avg_bits and options are validated here, before any model is loaded)."""
    from ar_algos.autoscheme import AutoScheme

    shared = relaxed_json(args.shared_layers, "--shared_layers") if args.shared_layers else None
    try:
        return AutoScheme(args.avg_bits, args.options, shared_layers=shared, dataset=args.dataset, device_map=device,
                          ignore_scale_zp_bits=bool(args.ignore_scale_zp_bits))
    except ArError as exc:
        raise UsageError(f"--avg_bits/--options: {exc}") from None


def search_layer_config(search, args: argparse.Namespace, layer_config: dict | None) -> tuple[Any, Any, dict]:
    """Load the model, run the search (user layer_config / ignore_layers stay fixed) and return
    (model, tokenizer, layer_config for AutoRound)."""
    from ar_algos.models import resolve_model

    model, tokenizer = resolve_model(args.model, trust_remote_code=bool(args.trust_remote_code))
    found = search.search(model, tokenizer, layer_config=layer_config, ignore_layers=args.ignore_layers,
                          quant_lm_head=bool(args.quant_lm_head))
    return model, tokenizer, found
