"""Load checkpoint folders in one real consumer and save what it computes (run by tests/test_consumer_table.py).

    python tests/consumer_runner.py CONSUMER IDS.pt FOLDER...

For each FOLDER it writes FOLDER/<CONSUMER>.pt: {"logits": [1, T, vocab] float32} and, for transformers-based
consumers, "weights": {layer: dequantized weight [out, in]} of every quantized module; or {"error": "..."} when the
consumer fails on that folder. One process per consumer keeps the library import (10-20 s) to once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def _weight(mod) -> torch.Tensor | None:
    """A quantized module's dequantized weight as the consumer holds it (None when it exposes none)."""
    if hasattr(mod, "quantization_scheme"):  # compressed-tensors
        weight = getattr(mod, "weight", None)
        if weight is None or not weight.is_floating_point() or weight.element_size() == 1:
            from compressed_tensors.compressors.base import decompress_module

            decompress_module(mod)
        return mod.weight.float()
    if hasattr(mod, "dequant_weight_online"):  # auto-round's fp/mx modules
        return mod.dequant_weight_online().float()
    return None


def _transformers(folder: Path, ids: torch.Tensor, consumer: str) -> dict:
    from transformers import AutoModelForCausalLM

    kw = {}
    if consumer == "auto-round":
        from transformers import AutoRoundConfig

        kw["quantization_config"] = AutoRoundConfig()
    if consumer == "gguf-py":
        kw["gguf_file"] = next(folder.glob("*.gguf")).name
    dtype = torch.bfloat16 if (folder / "act_quant").exists() else torch.float32
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map="cpu", **kw).eval()
    with torch.no_grad():  # first: compressed-tensors decompresses every module in its first forward's hook
        logits = lm(ids).logits.float()
    weights = {}
    for name, mod in lm.named_modules():
        if hasattr(mod, "quantization_scheme") or type(mod) is not torch.nn.Linear:
            w = _weight(mod)
            if w is not None:
                weights[name] = w
    return {"logits": logits, "weights": weights}


def _mlx_lm(folder: Path, ids: torch.Tensor) -> dict:
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    model, _ = load(str(folder))
    logits = model(mx.array(ids.numpy())).astype(mx.float32)
    return {"logits": torch.from_numpy(np.array(logits))}


def main(consumer: str, ids_path: str, folders: list[str]) -> None:
    """Run `consumer` on every folder (see the module docstring)."""
    ids = torch.load(ids_path)
    for folder in map(Path, folders):
        try:
            out = _mlx_lm(folder, ids) if consumer == "mlx-lm" else _transformers(folder, ids, consumer)
        except Exception as exc:  # noqa: BLE001 - the test reports the consumer's own error per folder
            out = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        torch.save(out, folder / f"{consumer}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
