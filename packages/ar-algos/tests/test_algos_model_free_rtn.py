"""Model-free mode's own RTN path: the chunked int RTN gives the regular `quantize` record bit for bit, tensors that
go out unchanged are never read or written by a worker, and the reader reuses one buffer."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ar_core.presets import parse_scheme
from ar_core.quant import quantize
from ar_core.registry import FORMATS
from ar_core.scheme import QuantScheme

from ar_algos.model_free import rtn
from ar_algos.model_free.source import TensorReader, read_header
from ar_algos.model_free.worker import ShardTask, describe_layers, quantize_shard


@pytest.mark.parametrize("bits,sym,group_size,scale_dtype", [
    (4, True, 128, "float16"), (4, False, 32, "float16"), (2, True, 64, "bfloat16"), (2, False, -1, "float32"),
    (8, True, 100, "float16"), (8, False, 32, "bfloat16"), (4, True, 1000, "float16"),
])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
def test_chunked_rtn_equals_the_regular_quantize(monkeypatch, bits, sym, group_size, scale_dtype, dtype):
    monkeypatch.setattr(rtn, "CHUNK_VALUES", 1000)  # many chunks, a last one shorter than the rest
    scheme = QuantScheme(bits=bits, sym=sym, group_size=group_size, data_type="int", scale_dtype=scale_dtype)
    gen = torch.Generator().manual_seed(bits * 7 + group_size)
    w = (torch.randn(37, 640, generator=gen) * torch.rand(37, 1, generator=gen) * 3).to(dtype)
    w[0] = 0  # an all-zero row: the scale falls back to its threshold
    w[1, :70] = 0
    kept = w.clone()
    for weight in (w, w.t().contiguous().t()):  # contiguous and transposed (Conv1D) storage
        want = quantize(weight, scheme)
        with torch.inference_mode():
            got = rtn.quantize_rows(weight, scheme)
        for field in ("codes", "scale", "zero"):
            a, b = getattr(want, field), getattr(got, field)
            assert a.dtype == b.dtype and torch.equal(a, b), field
        assert got.shape == want.shape and got.scheme == want.scheme and got.extras == want.extras
    assert torch.equal(w, kept)  # the source tensor is never written


def test_chunked_rtn_takes_only_grouped_int_weight_only_schemes():
    assert rtn.handles(parse_scheme("W4A16")) and rtn.handles(parse_scheme("W8A16"))
    assert not rtn.handles(parse_scheme("MXFP4"))
    assert not rtn.handles(QuantScheme(bits=8, group_size=0, data_type="int"))
    assert not rtn.handles(QuantScheme(bits=16, data_type="float"))


def test_unchanged_tensors_point_at_the_source_and_are_not_written(tmp_path):
    if not FORMATS.is_available("auto_round"):
        ar_export = pytest.importorskip("ar_export")
        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))
    src = tmp_path / "src.safetensors"
    save_file({"a.weight": torch.randn(64, 64, dtype=torch.bfloat16), "e.weight": torch.randn(10, 64).bfloat16(),
               "n.weight": torch.ones(64)}, str(src))
    layers = describe_layers([("a", parse_scheme("W4A16G32"), (64, 64))])
    task = ShardTask(str(src), str(tmp_path / "part.bin"), ["a.weight", "e.weight", "n.weight"],
                     {"a.weight": ("a", False)}, layers, FORMATS.get("auto_round"), "bfloat16")
    result = quantize_shard(task)
    header = read_header(src)
    assert result.stored["e.weight"] == header["e.weight"]  # same dtype: copied later straight from the source
    assert result.stored["n.weight"].shard == task.target and result.stored["n.weight"].dtype == "BF16"  # cast
    part_bytes = (tmp_path / "part.bin").stat().st_size
    assert part_bytes == sum(result.stored[n].nbytes for n in ("a.qweight", "a.qzeros", "a.scales", "n.weight"))


def test_the_reader_reuses_one_buffer_and_grows_it(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {"big": torch.arange(600, dtype=torch.float32).reshape(20, 30), "small": torch.ones(3, dtype=torch.int8),
               "scalar": torch.tensor(2.5, dtype=torch.float16), "empty": torch.zeros(0, 4)}
    save_file(tensors, str(path))
    header = read_header(path)
    with open(path, "rb") as f:
        reader = TensorReader(f)
        small = reader.read(header["small"])
        assert torch.equal(small, tensors["small"])
        for name in ("big", "scalar", "empty", "small"):
            got = reader.read(header[name])
            assert got.dtype == tensors[name].dtype and torch.equal(got, tensors[name])
        assert reader.buffer.numel() == 600 * 4  # grown once, to the largest tensor
        assert reader.read(header["small"]).data_ptr() == reader.buffer.data_ptr()
