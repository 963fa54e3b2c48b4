"""Model-free output pinned by sha256: a hand-built bf16 Llama checkpoint (seeded tensors, a written config.json)
quantized model-free must give these exact bytes, so any change to planning, RTN or packing that moves a byte fails.
The digests were taken from the meta-model planner, before planning moved to the safetensors headers."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from ar_core.registry import FORMATS

from ar_algos.model_free import quantize_model_free

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
          "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
          "torch_dtype": "bfloat16"}
GOLDEN = {
    "mxfp4": {"model.safetensors": "3918d9b976a125286f1e91c418e76c04a78e7dba205d0dd10eb69b555052a589",
              "quantization_config.json": "60103290b0b89cf5aaf6fa64edf92e77c939f62ad7c81593c6b7c509b90ddb2a"},
    "w2g32_asym_head": {"model.safetensors": "6feba78f09f4e083039753cc6d2fe789e63a470bd0c2ecdb8f0c511247aeb7ea",
                        "quantization_config.json": "7af69aa574187d73259ebcefe0bf938ce7abdb897f40c29f0c00f6bcfae1b3d4"},
    "w4g32": {"model.safetensors": "1784e06b3456ebb3ce815ae1669ea35b07dfca95f05a69bd13f3bf547eb473f1",
              "quantization_config.json": "f4652fc585179984f8bd5197e3c8d955d601b4c4f654be71c3c2b528be98035c"},
    "w8_mixed": {"model.safetensors": "8149b3df98d41fc22aa56bd43e0d026c80e75227d508522a8a296a829c84de0b",
                 "quantization_config.json": "6a9367336ce1fb6e6ca18f0bea2b8190e0a2ed1412005d634999bdef2d8df919"},
}


def _checkpoint(path):
    g = torch.Generator().manual_seed(20)
    w = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
    tensors = {"model.embed_tokens.weight": w(96, 64), "model.norm.weight": w(64), "lm_head.weight": w(96, 64)}
    for i in range(2):
        p = f"model.layers.{i}."
        tensors.update({f"{p}self_attn.q_proj.weight": w(64, 64), f"{p}self_attn.k_proj.weight": w(32, 64),
                        f"{p}self_attn.v_proj.weight": w(32, 64), f"{p}self_attn.o_proj.weight": w(64, 64),
                        f"{p}mlp.gate_proj.weight": w(128, 64), f"{p}mlp.up_proj.weight": w(128, 64),
                        f"{p}mlp.down_proj.weight": w(64, 128), f"{p}input_layernorm.weight": w(64),
                        f"{p}post_attention_layernorm.weight": w(64)})
    path.mkdir()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(CONFIG))
    return path


CASES = {
    "w4g32": ("W4A16G32", {}),
    "w2g32_asym_head": ({"bits": 2, "group_size": 32, "sym": False}, {"quant_lm_head": True}),
    "w8_mixed": ("W8A16G32", {"layer_config": {"mlp.down_proj": "W2A16G64"},
                              "ignore_layers": "layers.1.self_attn.o_proj"}),
    "mxfp4": ("MXFP4", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_free_output_matches_its_golden_sha256(tmp_path, case):
    if not FORMATS.is_available("auto_round"):
        FORMATS.register("auto_round", pytest.importorskip("ar_export").get_writer("auto_round"))
    scheme, kw = CASES[case]
    out = tmp_path / "out"
    quantize_model_free(_checkpoint(tmp_path / "src"), out, scheme=scheme, **kw)
    digests = {n: hashlib.sha256((out / n).read_bytes()).hexdigest()
               for n in ("model.safetensors", "quantization_config.json")}
    assert digests == GOLDEN[case]
