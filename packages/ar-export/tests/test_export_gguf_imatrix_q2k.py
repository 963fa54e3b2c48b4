"""Plain q2_k mix (llama.cpp's LLAMA_FTYPE_MOSTLY_Q2_K rules) and the imatrix-weighted q4_0/q5_0 search."""

import pytest
import torch

pytest.importorskip("gguf")

from ar_core.pack.gguf import rows_to_float  # noqa: E402
from ar_export.gguf.mix import FILE_TYPES, tensor_type  # noqa: E402
from ar_export.gguf.writer import quantize_rows  # noqa: E402


@pytest.mark.parametrize("name,n_gqa,expected", [
    ("blk.0.attn_v.weight", 1, "q3_k"), ("blk.5.attn_v.weight", 4, "q4_k"), ("blk.7.attn_output.weight", 1, "q3_k"),
    ("blk.9.ffn_down.weight", 1, "q3_k"), ("blk.9.ffn_up.weight", 1, "q2_k"), ("blk.0.attn_q.weight", 8, "q2_k"),
    ("output.weight", 1, "q6_k"), ("token_embd.weight", 1, "q2_k"),
])
def test_q2_k_rules(name, n_gqa, expected):
    assert tensor_type("q2_k", name, 4096, 32, n_gqa=n_gqa) == expected
    assert FILE_TYPES["q2_k"] == "MOSTLY_Q2_K"


def test_q2_k_row_fallbacks_of_a_576_wide_model():
    assert tensor_type("q2_k", "blk.0.attn_v.weight", 576, 30, n_gqa=3) == "q4_0"
    assert tensor_type("q2_k", "blk.0.ffn_down.weight", 1536, 30) == "q3_k"


@pytest.mark.parametrize("qtype", ["q4_0", "q5_0"])
def test_legacy_imatrix_with_zero_channels_never_loses_to_rtn(qtype):
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(7)) * 0.02
    imp = torch.rand(256, generator=torch.Generator().manual_seed(8)) ** 4 * 100
    imp[:40] = 0  # channels no calibration token reached, including whole 32-wide blocks
    rows = quantize_rows(w, qtype, imp)

    def err(data):
        return (((torch.from_numpy(rows_to_float(qtype, data, w.shape)) - w) ** 2) * imp).sum(-1)

    assert torch.isfinite(torch.from_numpy(rows_to_float(qtype, rows, w.shape))).all()
    assert bool((err(rows) <= err(quantize_rows(w, qtype)) + 1e-12).all())
