"""What plugins found through `ar_core.registry` look like (structural types; plugins need not inherit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .export_request import ExportRequest
from .qtensor import QuantizedTensor
from .scheme import QuantScheme


class ExportFormat(Protocol):
    """A writer registered in FORMATS under `name` (entry-point group "ar.formats").

    `check(schemes)` runs before any quantization and raises ArError when a scheme cannot be held (naming the
    formats that can). `save` writes a complete checkpoint atomically (temporary directory renamed at the end) and
    returns its path. `quantized` maps module names (e.g. "model.layers.0.self_attn.q_proj") to their records;
    layers absent from it keep the model's own 16-bit weights; `request` carries what the run decided for all
    formats (global scheme, block lists, GGUF mix; see ar_core.export_request), built from the records when None.
    """

    name: str

    def supports(self, scheme: QuantScheme) -> bool: ...

    def check(self, schemes: dict[str, QuantScheme]) -> None: ...

    def save(self, output_dir: str | Path, model: Any, quantized: dict[str, QuantizedTensor], *,
             tokenizer: Any = None, processor: Any = None, source_dir: str | Path | None = None,
             run_info: dict[str, Any] | None = None, overwrite: bool = False,
             request: ExportRequest | None = None) -> Path: ...

