"""Issue 24 point 1: opt-RTN takes its statistics where the reference's does (the full-precision chain)."""

import copy

import torch

import ar_algos.driver as driver
from ar_algos import AutoRound
from ar_algos.tiny import random_samples, tiny_model


def test_opt_rtn_imatrix_of_a_later_block_comes_from_the_16_bit_chain(monkeypatch):
    model = tiny_model("llama", num_hidden_layers=2)
    samples = random_samples(4, 16)
    fp = copy.deepcopy(model)
    expected, handles = {}, []
    for name, layer in fp.model.layers[1].named_modules():
        if isinstance(layer, torch.nn.Linear):
            def hook(_m, args, name=name):
                x = args[0].detach().float().reshape(-1, args[0].shape[-1]).pow(2).sum(0)
                expected[name] = expected.get(name, 0) + x
            handles.append(layer.register_forward_pre_hook(hook))
    with torch.no_grad():
        for s in samples:
            fp(**s)
    seen = []
    real = driver.rtn_layers

    def spy(layers, schemes, imatrix=None):
        seen.append(imatrix)
        return real(layers, schemes, imatrix)

    monkeypatch.setattr(driver, "rtn_layers", spy)
    AutoRound(model, scheme="W2G32", dataset=samples, nsamples=4, seqlen=16, batch_size=2, iters=0, amp=False,
              verbose=False).quantize()
    block1 = seen[1]
    assert expected.keys() == block1.keys()
    for name, value in expected.items():
        assert torch.allclose(block1[name], value, rtol=1e-4), name  # the quantized chain's do not
