"""`read_tensors` reads a GGUF file back as the records the writer produced, so any GGUF file (ours or llama.cpp's)
can be dequantized into the HF model with `dequantized_state_dict`."""

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")
pytest.importorskip("transformers")

from ar_core.errors import CheckpointError  # noqa: E402
from ar_export.gguf import dequantized_state_dict, export_tensors, read_tensors, write_tensors  # noqa: E402
from ar_export.gguf import reader  # noqa: E402
from ar_export.testing import tiny_llama  # noqa: E402


@pytest.mark.parametrize("mix", ["q4_k_m", "q2_k_s"])
def test_read_back_equals_what_was_written(tmp_path, mix):
    model = tiny_llama()
    tensors = export_tensors(model, mix)
    path = write_tensors(model, None, tmp_path / "tiny.gguf", mix, tensors)
    back = {t.name: t for t in read_tensors(path)}
    assert set(back) == {t.name for t in tensors}
    for t in tensors:
        b = back[t.name]
        assert (b.qtype, b.shape) == (t.qtype, t.shape), t.name
        assert np.array_equal(np.asarray(b.data).reshape(-1).view(np.uint8),
                              np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)), t.name
    ours, theirs = dequantized_state_dict(model, tensors), dequantized_state_dict(model, list(back.values()))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_unreadable_type_is_a_clear_error(tmp_path, monkeypatch):
    model = tiny_llama()
    path = write_tensors(model, None, tmp_path / "tiny.gguf", "q4_0", export_tensors(model, "q4_0"))
    monkeypatch.setattr(reader, "READABLE", ("f32",))
    with pytest.raises(CheckpointError, match="q4_0"):
        read_tensors(path)
