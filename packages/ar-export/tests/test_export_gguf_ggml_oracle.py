"""Our GGUF bytes against ggml's own C quantizer (`ggml_quantize_chunk` from libggml-base, loaded with ctypes).

Opt-in: set AR_GGML_LIB to a libggml-base.so. Build one in about a minute from the llama-cpp-python sdist:
    pip download --no-deps --no-binary=:all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
    cd llama_cpp_python-0.3.36/vendor/llama.cpp/ggml && touch ggml.pc.in
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=ON
    cmake --build build --target ggml-base        # -> build/src/libggml-base.so
"""

import ctypes
import os

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
LIB = os.environ.get("AR_GGML_LIB")
pytestmark = pytest.mark.skipif(not LIB, reason="AR_GGML_LIB (path to libggml-base.so) is not set")

from ar_core.pack import gguf as pg  # noqa: E402
from ar_export.gguf.writer import quantize_rows  # noqa: E402  (the writer's optimized RTN)


def ggml_quantize(x: np.ndarray, name: str, imatrix: np.ndarray | None = None) -> np.ndarray:
    lib = ctypes.CDLL(LIB)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    codec = pg.CODECS[name]
    x = np.ascontiguousarray(x, np.float32)
    out = np.zeros((x.shape[0], x.shape[1] // codec.block_size * codec.type_size), np.uint8)
    im = None if imatrix is None else np.ascontiguousarray(imatrix, np.float32)
    lib.ggml_quantize_chunk(int(getattr(gguf.GGMLQuantizationType, name.upper())), x.ctypes.data, out.ctypes.data,
                            0, x.shape[0], x.shape[1], None if im is None else im.ctypes.data)
    return out


def weights():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((256, 1024)) * rng.uniform(0.005, 0.05, (256, 1))).astype(np.float32)
    x[rng.random(x.shape) < 0.002] *= 8
    return x, (rng.random(1024) ** 4 * 100).astype(np.float32)


def rel_mse(x, d, w=1.0):
    return float((((d - x) ** 2) * w).sum() / ((x ** 2) * w).sum())


@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"])
def test_legacy_bytes_equal_ggml(name):
    x, _ = weights()
    codec = pg.CODECS[name]
    ours = codec.pack(codec.reference_fields(x.reshape(-1, 32))).reshape(x.shape[0], -1)
    assert np.array_equal(ours, ggml_quantize(x, name))


@pytest.mark.parametrize("name", ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"])
def test_kquants_match_ggml_quality(name):
    x, imp = weights()
    theirs = ggml_quantize(x, name)
    codec = pg.CODECS[name]
    # ggml's real bytes decode through our codec exactly as gguf-py decodes them
    ours_dq = codec.dequantize(theirs.reshape(-1, codec.type_size)).reshape(x.shape)
    assert np.array_equal(ours_dq, gguf.quants.dequantize(theirs, getattr(gguf.GGMLQuantizationType, name.upper())))
    ours = quantize_rows(torch.from_numpy(x), name)
    assert (ours != theirs).mean() < 0.05  # same algorithm; only float summation order differs
    assert rel_mse(x, pg.rows_to_float(name, ours, x.shape)) <= 1.01 * rel_mse(x, ours_dq)
    ours_im = pg.rows_to_float(name, quantize_rows(torch.from_numpy(x), name, torch.from_numpy(imp)), x.shape)
    theirs_im = pg.rows_to_float(name, ggml_quantize(x, name, imp), x.shape)
    assert rel_mse(x, ours_im, imp) <= 1.02 * rel_mse(x, theirs_im, imp)
