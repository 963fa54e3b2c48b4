"""device_map: one block's linears spread over several devices (CPU-checkable logic; real GPUs when present)."""

import pytest
import torch

import ar_algos.placement as placement
from ar_algos import AutoRound
from ar_algos.blocks import find_blocks, find_linears, get_module
from ar_algos.placement import DeviceMap, assign_devices, parse_device_map, spread
from ar_algos.tiny import random_samples, tiny_model
from ar_core.errors import ArError

CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")


def _ar(**kw):
    args = dict(scheme="W3G32", dataset=random_samples(4, 8), nsamples=4, seqlen=8, batch_size=2, iters=3,
                verbose=False)
    return AutoRound(tiny_model("llama", num_hidden_layers=2), **{**args, **kw})


def _block():
    model = tiny_model("llama", num_hidden_layers=1)
    name = find_blocks(model)[0]
    block = get_module(model, name)
    return block, {n: f"{name}.{n}" for n in find_linears(block)}


def test_device_map_forms_parse_to_a_main_device_and_a_spread():
    assert parse_device_map(None, "cpu") == DeviceMap(CPU)
    assert parse_device_map("cpu") == parse_device_map(CPU) == DeviceMap(CPU)
    assert parse_device_map(["cpu", "cpu"]) == DeviceMap(CPU, (CPU, CPU))
    assert parse_device_map("cpu,cpu").spreads
    dmap = parse_device_map({"mlp.down_proj": "cpu"}, "cpu")
    assert dmap.main == CPU and dmap.layers == {"mlp.down_proj": CPU} and dmap.spreads
    if not torch.cuda.is_available():
        assert parse_device_map("auto") == DeviceMap(CPU)


@pytest.mark.parametrize("kw, field", [
    (dict(device_map=[]), "device_map"),
    (dict(device_map=True), "device_map"),
    (dict(device_map="cpu,,cpu"), "device_map"),
    (dict(device_map={"": "cpu"}), "device_map"),
    (dict(device_map=["cpu", "cpu"], device="cpu"), "device"),
    (dict(device_map="cuda:99"), "device_map"),
    (dict(device_map={"mlp.nope": "cpu"}, device="cpu"), "device_map"),
    (dict(device_map=["cpu", "cpu"], algorithm="awq", iters=None), None),
])
def test_bad_device_maps_raise_arerror_naming_the_field(kw, field):
    if field is None:  # AWQ on several devices: refused only when they really differ
        _ar(**kw)
        return
    with pytest.raises(ArError, match=field):
        _ar(**kw)


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="checks the message of a machine with fewer GPUs")
def test_several_gpus_on_a_machine_without_them_is_a_clear_error():
    with pytest.raises(ArError, match="several devices need that many CUDA GPUs"):
        parse_device_map("0,1")


def test_a_list_cuts_the_block_into_runs_of_similar_size_in_forward_order():
    block, full = _block()
    meta = torch.device("meta")
    devices = assign_devices(find_linears(block), DeviceMap(CPU, (CPU, meta)), full)
    order = [d.type for d in devices.values()]
    assert order == sorted(order, key=lambda t: t == "meta") and set(order) == {"cpu", "meta"}  # one cut
    assert devices["mlp.down_proj"] == meta and devices["self_attn.q_proj"] == CPU
    by_name = assign_devices(find_linears(block), DeviceMap(CPU, layers={"mlp.up_proj": meta}), full)
    assert [n for n, d in by_name.items() if d == meta] == ["mlp.up_proj"]


def test_spread_moves_each_linear_and_hooks_it():
    block, full = _block()
    handles = spread(block, DeviceMap(CPU, (CPU, torch.device("meta"))), full)
    assert len(handles) == 2 * len(full)
    assert block.mlp.down_proj.weight.is_meta and not block.self_attn.q_proj.weight.is_meta
    assert not block.input_layernorm.weight.is_meta  # only linears move
    assert spread(block, DeviceMap(CPU), full) == []  # one device: nothing to do


@pytest.mark.parametrize("kw", [dict(device_map=["cpu", "cpu"]), dict(device_map={"mlp.down_proj": "cpu"},
                                                                      device="cpu")])
def test_a_spread_run_matches_the_one_device_run_and_cleans_up(kw, monkeypatch):
    hooked = []
    real = placement.spread

    def counting(module, dmap, full):
        handles = real(module, dmap, full)
        hooked.append(len(handles))
        return handles

    monkeypatch.setattr(placement, "spread", counting)
    model, spread_records = _ar(**kw, quant_lm_head=True).quantize()
    _, plain = _ar(device="cpu", quant_lm_head=True).quantize()
    assert hooked and all(n > 0 for n in hooked[:2])  # both blocks ran with hooked layers
    for name, qt in plain.items():
        assert torch.equal(qt.codes, spread_records[name].codes) and torch.equal(qt.scale, spread_records[name].scale)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert placement.MAIN_DEVICE_ATTR not in m.__dict__


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("device_map", [["cuda:0", "cpu"], {"mlp.down_proj": "cpu"}])
def test_a_block_spread_over_gpu_and_cpu_tunes_and_returns_home(device_map):
    kw = dict(device_map=device_map, device="cuda:0" if isinstance(device_map, dict) else None)
    model, records = _ar(**kw, quant_lm_head=True).quantize()
    assert all(p.device.type == "cpu" for p in model.parameters())
    for name, qt in records.items():
        assert torch.equal(model.get_submodule(name).weight.detach(), qt.dequantize())


@pytest.mark.cuda
@two_gpus
def test_two_gpus_share_each_block(monkeypatch):
    seen = set()
    real = placement.spread

    def watching(module, dmap, full):
        handles = real(module, dmap, full)
        seen.update(p.device for p in module.parameters())
        return handles

    monkeypatch.setattr(placement, "spread", watching)
    _, records = _ar(device_map="0,1").quantize()
    assert seen == {torch.device("cuda:0"), torch.device("cuda:1")} and records
