"""`format="gguf:<mix>"` (the reference's spelling) picks the GGUF scheme, and the file carries the asked mix's name
and rules even when every tensor of a narrow model fell back to another type."""

import pytest

from ar_algos import AutoRound
from ar_cli.main import main
from ar_core.errors import ArError
from ar_export.testing import save_tiny_model, tiny_llama, tiny_tokenizer

pytest.importorskip("gguf")


@pytest.mark.parametrize("hidden", [256, 64])  # 64: no row holds a 256-wide k-quant block, all fall back
def test_api_gguf_mix_format_names_the_mix(tmp_path, hidden):
    model = tiny_llama(seed=0, hidden_size=hidden, intermediate_size=2 * hidden)
    ar = AutoRound(model, tiny_tokenizer(), iters=0, nsamples=2, seqlen=16, verbose=False)
    _, paths = ar.quantize_and_save(tmp_path / "out", format="gguf:q4_k_m")
    assert ar.scheme.gguf.lower() == "q4_k_m"
    assert [p.name.endswith("-q4_k_m.gguf") for p in paths[0].glob("*.gguf")] == [True]


def test_api_gguf_mix_format_contradicting_the_scheme_is_refused_before_work(tmp_path):
    ar = AutoRound(tiny_llama(seed=0), tiny_tokenizer(), scheme="GGUF:Q2_K_S", iters=0, verbose=False)
    with pytest.raises(ArError, match="gguf:q4_k_m.*use scheme='GGUF:Q4_K_M'"):
        ar.quantize_and_save(tmp_path / "out", format="gguf:q4_k_m")
    assert not (tmp_path / "out").exists() and ar.records is None


def test_cli_gguf_mix_format(tmp_path, capsys):
    src = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "out"
    assert main(["quantize", str(src), "--format", "gguf:q4_k_m", "--iters", "0", "--nsamples", "2",
                 "--seqlen", "16", "--output_dir", str(out)]) == 0
    assert [p.name.endswith("-q4_k_m.gguf") for p in out.rglob("*.gguf")] == [True]
