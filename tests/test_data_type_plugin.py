"""A data type added from outside ar-core (tests/plugins/int_pow2.py, advertised through an "ar.data_types" entry
point of a package made here) quantizes a tiny model, saves it in the auto_round format, reloads and evaluates.

The plugin is also the worked example of docs/extend/data-type.md: its first python block is the plugin file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from ar_core.errors import SchemeError
from ar_core.registry import DATA_TYPES, get_data_type
from ar_core.scheme import QuantScheme

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "int_pow2.py"
GUIDE = ROOT / "docs" / "extend" / "data-type.md"


@pytest.fixture
def int_pow2(tmp_path, monkeypatch):
    """The plugin installed as a package would be: its module and a dist-info advertising it on sys.path."""
    dist = tmp_path / "ar_int_pow2-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ar-int-pow2\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ar.data_types]\nint_pow2 = int_pow2:IntPow2\n")
    (tmp_path / "int_pow2.py").write_text(PLUGIN.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    DATA_TYPES.names()  # the built-in types register before the entry points are read again
    monkeypatch.setattr(DATA_TYPES, "_entry_points", None)
    yield get_data_type("int_pow2")
    DATA_TYPES.unregister("int_pow2")
    monkeypatch.delitem(sys.modules, "int_pow2", raising=False)


def test_unknown_data_type_raises_before_the_plugin_is_installed():
    with pytest.raises(SchemeError, match="data_type='int_pow2'"):
        QuantScheme(data_type="int_pow2")


def test_the_plugin_declares_its_facts(int_pow2):
    from ar_core.bits import layer_bits
    from ar_export.support import scheme_kind

    assert type(int_pow2).__name__ == "IntPow2" and "int_pow2" in DATA_TYPES.names()
    s = QuantScheme(bits=4, group_size=32, data_type="int_pow2")
    assert scheme_kind(s) == "int_sym"
    assert layer_bits(s, (64, 128)).total_bits == 4 + 16 / 32
    with pytest.raises(SchemeError, match="bits=5"):
        QuantScheme(bits=5, data_type="int_pow2")
    with pytest.raises(SchemeError, match="symmetric only"):
        QuantScheme(bits=4, sym=False, data_type="int_pow2")


def test_quantize_save_reload_evaluate(int_pow2, tmp_path):
    import ar_export
    from ar_algos import AutoRound
    from ar_eval import EvalProtocol, perplexity
    from ar_export.testing import calibration_texts, tiny_llama, tiny_tokenizer
    from ar_kernels import load

    ar_export.register_all()
    tok = tiny_tokenizer()
    reference = tiny_llama()
    ar = AutoRound(tiny_llama(), tok, scheme=dict(bits=4, group_size=32, sym=True, data_type="int_pow2"),
                   recipe="rtn", verbose=False)
    model, records = ar.quantize()
    scales = records["model.layers.0.mlp.down_proj"].scale.float().abs()
    assert torch.equal(torch.exp2(torch.round(torch.log2(scales))), scales)  # every scale a power of two
    out = ar.save_quantized(tmp_path / "q", "auto_round")[0]
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["data_type"], qc["packing_format"]) == ("int", "auto_round:auto_gptq")

    loaded = load(out)
    ids = tok("\n".join(calibration_texts(4)), return_tensors="pt").input_ids[0][:256]
    with torch.no_grad():
        assert torch.allclose(loaded(ids[None, :64]).logits, model(ids[None, :64]).logits, atol=1e-3)
    protocol = EvalProtocol(seqlen=64, stride=64, add_bos=False, max_windows=4)
    ppl, ppl_ref = perplexity(loaded, ids, protocol).ppl, perplexity(reference, ids, protocol).ppl
    assert abs(ppl / ppl_ref - 1) < 0.1  # a random tiny model: near its own 16-bit perplexity (~600)


def test_the_guide_example_is_the_plugin():
    assert f"```python\n{PLUGIN.read_text()}```\n" in GUIDE.read_text()
