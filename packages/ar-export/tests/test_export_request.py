"""`ExportRequest`: decided once per save (ar_core.export_request) and read by the writers instead of re-derived."""

import dataclasses
import json

import pytest
import torch

from ar_core.export_request import ExportRequest, build_request
from ar_core.presets import gguf_scheme, parse_scheme
from ar_core.quant import quantize


def _records(model, schemes):
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    return {n: quantize(model.get_submodule(n).weight.detach(), schemes[i % len(schemes)])
            for i, n in enumerate(names)}


def test_build_request_derives_what_the_run_did_not_state():
    from ar_kernels.testing import tiny_llama

    w4, w8 = parse_scheme({"scheme": "W4A16", "group_size": 32}), parse_scheme({"scheme": "W8A16", "group_size": 32})
    records = _records(tiny_llama(), [w4, w8])  # a tie: the first in model order wins
    req = build_request(records, {"iters": 0})
    assert req.block_names == ("model.layers",) and req.global_scheme == w4 and req.gguf_mix is None
    assert dict(req.run_info) == {"iters": 0} and req.quantized_names == list(records)
    assert build_request(records, global_scheme=w8, block_names=["model.layers"]).global_scheme == w8
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.global_scheme = w8
    q4k = {"a": quantize(torch.randn(8, 256), gguf_scheme("q4_k"))}
    assert build_request(q4k).gguf_mix is None and build_request(q4k, {"gguf": "Q4_K_M"}).gguf_mix == "Q4_K_M"


def test_writer_states_the_request_global_scheme(tmp_path):
    import ar_export
    from ar_kernels.testing import tiny_llama

    model = tiny_llama()
    w4, w8 = parse_scheme({"scheme": "W4A16", "group_size": 32}), parse_scheme({"scheme": "W8A16", "group_size": 32})
    records = _records(model, [w4, w8])
    ar_export.register_all()
    writer = ar_export.get_writer("auto_round")
    writer.save(tmp_path / "derived", model, records)
    stated = build_request(records, global_scheme=w8)
    assert isinstance(stated, ExportRequest)
    writer.save(tmp_path / "stated", model, records, request=stated)
    derived = json.loads((tmp_path / "derived" / "config.json").read_text())["quantization_config"]
    given = json.loads((tmp_path / "stated" / "config.json").read_text())["quantization_config"]
    assert derived["bits"] == 4 and given["bits"] == 8
    assert given["block_name_to_quantize"] == "model.layers"
    assert {v["bits"] for v in given["extra_config"].values()} == {4}
