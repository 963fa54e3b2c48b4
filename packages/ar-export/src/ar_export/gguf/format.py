"""The "gguf" entry of the FORMATS registry: one .gguf file (plus tokenizer side files) in an output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ar_core.errors import ArError, SchemeError, field_error
from ar_core.export_request import ExportRequest, build_request
from ar_core.io import atomic_output_dir
from ar_core.presets import GGUF_MIXES, GGUF_TYPES
from ar_core.qtensor import QuantizedTensor
from ar_core.scheme import QuantScheme

from ..support import supports
from .mix import check_mix
from .writer import record_type, rule_schemes, write_gguf


class GGUFFormat:
    """ExportFormat for llama.cpp GGUF files (see ar_core.protocols.ExportFormat)."""

    name = "gguf"

    def supports(self, scheme: QuantScheme) -> bool:
        """True for 16/32-bit layers and schemes that are one of llama.cpp's types (q4_0 ... q6_k) and that the
        capability table (ar_export.capabilities) lists for gguf."""
        if not scheme.is_quantized:
            return True
        if not supports(self.name, scheme):
            return False
        probe = QuantizedTensor(codes=None, scale=None, zero=None, scheme=scheme, shape=(0, 0))
        try:
            record_type(probe)
        except ArError:
            return False
        return True

    def check(self, schemes: dict[str, QuantScheme]) -> None:
        """Raise SchemeError naming the first layer whose scheme is not a GGUF type."""
        for name, s in schemes.items():
            if not self.supports(s):
                raise field_error(SchemeError, f"scheme of layer {name!r}", s.to_dict(),
                                  f"a GGUF type ({sorted(GGUF_TYPES)}); use a GGUF:* preset")

    def layer_rules(self, model: Any, mix: str) -> dict[str, QuantScheme]:
        """Module name -> the scheme `mix`'s llama.cpp per-tensor rules ask for (before row fallbacks); the layer
        plan of a GGUF run starts from these (see `ar_export.gguf.writer.rule_schemes`)."""
        return rule_schemes(model, mix)

    def save(self, output_dir: str | Path, model: Any, quantized: dict[str, QuantizedTensor], *,
             tokenizer: Any = None, processor: Any = None, source_dir: str | Path | None = None,
             run_info: dict[str, Any] | None = None, overwrite: bool = False,
             request: ExportRequest | None = None) -> Path:
        """Write `<output_dir>/<name>-<mix>.gguf`; the mix is the request's (built from run_info['gguf'] or the
        records' scheme when no request is given)."""
        self.check({n: qt.scheme for n, qt in quantized.items()})
        run_info = run_info or {}
        mix = check_mix(request_mix(request or build_request(quantized, run_info)))
        stem = Path(str(getattr(model.config, "_name_or_path", "") or "model")).name or "model"
        with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:
            write_gguf(model, tokenizer, tmp / f"{stem}-{mix}.gguf", mix, quantized, run_info.get("imatrix"))
        return Path(output_dir)


def request_mix(request: ExportRequest) -> str:
    """The llama.cpp mix of a save's request (SchemeError when neither the run nor the records name one)."""
    if request.gguf_mix is None:
        raise field_error(SchemeError, "gguf mix", None,
                          f"run_info['gguf'] or records tagged with a mix ({sorted(GGUF_MIXES)})")
    return request.gguf_mix


FORMAT = GGUFFormat()
