"""GGUF block codecs against gguf-py: byte-identical legacy quantizers, lossless layouts, exact dequantization."""

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from ar_core.errors import SchemeError  # noqa: E402
from ar_core.pack import gguf as pg  # noqa: E402
from ar_core.presets import gguf_scheme  # noqa: E402
from ar_core.quant import quantize  # noqa: E402

LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
K_TYPES = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]


def ggml(name):
    return getattr(gguf.GGMLQuantizationType, name.upper())


def weights(rows=48, cols=512, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * rng.uniform(1e-3, 4, (rows, 1))).astype(np.float32)
    x[0, :32] = 0  # all-zero block
    x[1, :32] = 0.5  # constant block
    x[2, :32] = np.arange(32, dtype=np.float32) - 16  # exact ties for q4/q5 rounding
    x[3, :64] = rng.integers(-8, 8, 64).astype(np.float32) * np.float32(0.25)
    return x


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_reference_is_byte_identical_to_gguf(name):
    x = weights()
    codec = pg.CODECS[name]
    ours = codec.pack(codec.reference_fields(x.reshape(-1, 32))).reshape(x.shape[0], -1)
    theirs = gguf.quants.quantize(x, ggml(name))
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs), f"{(ours != theirs).mean():.4%} of bytes differ"


def random_blocks(name, n=64, seed=1):
    """Random block bytes with finite fp16 scales (NaN payloads need not survive a float round trip)."""
    codec = pg.CODECS[name]
    rng = np.random.default_rng(seed)
    fields = codec.unpack(rng.integers(0, 256, (n, codec.type_size), dtype=np.uint8))
    for key in ("d", "dmin", "m"):
        if key in fields:
            fields[key] = (rng.standard_normal(n) * 0.1).astype(np.float16)
    return codec.pack(fields)


@pytest.mark.parametrize("name", LEGACY + K_TYPES)
def test_layout_round_trip_is_lossless(name):
    codec = pg.CODECS[name]
    blocks = random_blocks(name)
    assert blocks.shape == (64, codec.type_size)
    again = codec.pack(codec.unpack(blocks))
    assert np.array_equal(again, blocks)


@pytest.mark.parametrize("name", LEGACY + K_TYPES)
def test_dequantize_equals_gguf_exactly(name):
    codec = pg.CODECS[name]
    blocks = random_blocks(name, seed=2)
    ours = codec.dequantize(blocks)
    theirs = gguf.quants.dequantize(blocks, ggml(name)).reshape(ours.shape)
    assert ours.dtype == np.float32
    assert np.array_equal(ours, theirs)


def test_code_ranges_survive_packing():
    # every code value of every type lands where ggml reads it
    for name in LEGACY + K_TYPES:
        codec = pg.CODECS[name]
        n = 8
        top = (1 << codec.bits) - 1
        q = (np.arange(n * codec.block_size) % (top + 1)).astype(np.uint8).reshape(n, -1)
        fields = codec.unpack(np.zeros((n, codec.type_size), np.uint8))
        fields["q"] = q
        fields["d"] = np.ones(n, np.float16)
        if "sc" in fields:
            fields["sc"] = np.ones_like(fields["sc"])
        got = codec.dequantize(codec.pack(fields))
        half = 0 if getattr(codec, "asym", False) or "dmin" in fields else 1 << (codec.bits - 1)
        assert np.array_equal(got, q.astype(np.float32) - half), name


def test_bf16_bits_match_gguf():
    x = weights(4, 256).copy()
    x[0, 0] = np.nan
    x[0, 1] = np.inf
    ours = pg.to_bf16_bits(x)
    theirs = gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16).view(np.uint16)
    assert np.array_equal(ours, theirs)
    back = pg.rows_to_float("bf16", ours, x.shape)
    assert np.array_equal(back[1:], gguf.quants.dequantize(theirs.view(np.uint8), gguf.GGMLQuantizationType.BF16)[1:])


@pytest.mark.parametrize("name", K_TYPES)
@pytest.mark.parametrize("search", [False, True])
def test_kquant_records_pack_to_bytes_gguf_reads_back_exactly(name, search):
    w = torch.from_numpy(weights(16, 512, seed=3))
    qt = quantize(w, gguf_scheme(name), search=search, imatrix=torch.rand(512) if search else None)
    rows = pg.pack_qtensor(qt, name)
    assert rows.shape == (16, 512 // 256 * pg.CODECS[name].type_size)
    theirs = gguf.quants.dequantize(rows, ggml(name))
    assert np.array_equal(theirs, qt.dequantize().numpy())


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_records_with_fp16_scales_pack_exactly(name):
    w = torch.from_numpy(weights(8, 256, seed=4))
    qt = quantize(w, gguf_scheme(name).replace(scale_dtype="float16"))
    rows = pg.pack_qtensor(qt, name)
    assert np.array_equal(gguf.quants.dequantize(rows, ggml(name)), qt.dequantize().numpy())


def test_pack_rejects_rows_that_do_not_fill_blocks():
    qt = quantize(torch.randn(4, 96), gguf_scheme("q4_0"))
    with pytest.raises(SchemeError, match="in_features"):
        pg.pack_qtensor(qt, "q4_k")
    with pytest.raises(SchemeError, match="gguf type"):
        pg.get_codec("q7_k")
