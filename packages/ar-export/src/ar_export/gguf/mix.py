"""Per-tensor ggml type choice for a llama.cpp mix (q4_k_m, q3_k_l, ...), following llama.cpp's rules.

The mix suffix (_s/_m/_l) only changes which tensors get more bits: output (and a tied embedding) -> q6_k;
attn_v, attn_output, attn_qkv and ffn_down get upgrades on the "use more bits" layers (first and last eighth, and
every third layer in between); plain q2_k puts q3_k on every attn_v, attn_output and ffn_down. A k-quant needs
rows divisible by 256, otherwise it falls back as llama.cpp (llama-cpp-python 0.3.36) does: q2_k/q3_k -> q4_0,
q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0; any type falls back to bf16 when even 32 does not divide.
"""

from __future__ import annotations

import re

from ar_core.errors import SchemeError, field_error
from ar_core.presets import GGUF_MIXES, GGUF_ROW_FALLBACK

K_TYPES = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
FILE_TYPES = {"q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1", "q5_0": "MOSTLY_Q5_0", "q5_1": "MOSTLY_Q5_1",
              "q8_0": "MOSTLY_Q8_0", "q2_k": "MOSTLY_Q2_K", "q2_k_s": "MOSTLY_Q2_K_S", "q3_k_s": "MOSTLY_Q3_K_S",
              "q3_k_m": "MOSTLY_Q3_K_M", "q3_k_l": "MOSTLY_Q3_K_L", "q4_k_s": "MOSTLY_Q4_K_S",
              "q4_k_m": "MOSTLY_Q4_K_M", "q5_k_s": "MOSTLY_Q5_K_S", "q5_k_m": "MOSTLY_Q5_K_M", "q6_k": "MOSTLY_Q6_K"}
_BLOCK = re.compile(r"^blk\.(\d+)\.")


def check_mix(mix: str) -> str:
    """Normalise a mix name ('GGUF:Q4_K_M' -> 'q4_k_m'); raise SchemeError for an unknown one."""
    key = str(mix).lower().removeprefix("gguf:")
    if key not in GGUF_MIXES:
        raise field_error(SchemeError, "mix", mix, f"one of {sorted(GGUF_MIXES)}")
    return key


def use_more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get a higher-bit type in _M mixes."""
    eighth = n_layers // 8
    return layer < eighth or layer >= 7 * n_layers // 8 or (layer - eighth) % 3 == 2


def _rule(mix: str, role: str, layer: int, n_layers: int, n_gqa: int, n_expert: int) -> str | None:
    """The upgraded type for a tensor role, or None to keep the mix's base type."""
    if role == "attn_v":
        if n_expert == 8:
            return "q8_0"
        if mix == "q2_k":
            return "q4_k" if n_gqa >= 4 else "q3_k"
        if mix == "q2_k_s" and n_gqa >= 4:
            return "q4_k"
        if mix == "q3_k_m":
            return "q5_k" if layer < 2 else "q4_k"
        if mix == "q3_k_l":
            return "q5_k"
        if mix in ("q4_k_m", "q5_k_m") and use_more_bits(layer, n_layers):
            return "q6_k"
        if mix == "q4_k_s" and layer < 4:
            return "q5_k"
    elif role == "ffn_down":
        if mix == "q2_k":
            return "q3_k"
        if mix == "q2_k_s" and layer < n_layers // 8:
            return "q4_k"
        if mix == "q3_k_m":
            return "q5_k" if layer < n_layers // 16 else "q4_k"
        if mix == "q3_k_l":
            return "q5_k"
        if mix in ("q4_k_m", "q5_k_m") and use_more_bits(layer, n_layers):
            return "q6_k"
        if mix == "q4_k_s" and layer < n_layers // 8:
            return "q5_k"
    elif role == "attn_k":
        if n_expert == 8:
            return "q8_0"
    elif role == "attn_output":
        if n_expert == 8:
            return "q5_k" if mix in ("q2_k", "q3_k_s", "q3_k_m", "q4_k_s", "q4_k_m") else None
        if mix == "q2_k":
            return "q3_k"
        if mix == "q3_k_m":
            return "q4_k"
        if mix == "q3_k_l":
            return "q5_k"
    elif role == "attn_qkv":
        if mix in ("q3_k_m", "q3_k_l"):
            return "q4_k"
        if mix == "q4_k_m":
            return "q5_k"
        if mix == "q5_k_m":
            return "q6_k"
    return None


def fallback(qtype: str, row: int) -> str:
    """The type actually usable for rows of length `row` (k-quants need 256, legacy types 32)."""
    if qtype in K_TYPES and row % 256:
        qtype = GGUF_ROW_FALLBACK[qtype]
    if qtype not in ("f32", "f16", "bf16") and row % 32:
        return "bf16"
    return qtype


def wanted_type(mix: str, gguf_name: str, n_layers: int, n_gqa: int = 1, n_expert: int = 0,
                tied: bool = False) -> str:
    """ggml type the `mix` rules ask for one 2-D+ weight called `gguf_name` (e.g. 'blk.3.attn_v.weight'), before
    the row-size fallback; the single per-tensor planner behind both write_gguf and AutoRound's layer plan."""
    mix = check_mix(mix)
    base = GGUF_MIXES[mix]
    stem = gguf_name.removesuffix(".weight")
    if stem == "output" or (stem == "token_embd" and tied):
        return base if base == "q8_0" else "q6_k"
    if stem == "token_embd":
        return base
    m = _BLOCK.match(stem)
    layer = int(m.group(1)) if m else 0
    role = (stem[m.end():] if m else stem).removesuffix("_exps")
    return _rule(mix, role, layer, n_layers, n_gqa, n_expert) or base


def tensor_type(mix: str, gguf_name: str, row: int, n_layers: int, n_gqa: int = 1, n_expert: int = 0,
                tied: bool = False) -> str:
    """ggml type stored for one 2-D+ weight called `gguf_name` under `mix`: `wanted_type`, then the fallback for
    rows of length `row`."""
    return fallback(wanted_type(mix, gguf_name, n_layers, n_gqa, n_expert, tied), row)
