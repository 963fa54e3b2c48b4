"""transformers integration: `from_pretrained` loads quant_method "auto-round" checkpoints with our QuantLinears.

transformers maps quant_method "auto-round" to a quantizer that needs the reference `auto-round` package. When that
package cannot be imported, `enable_transformers_integration()` puts `ArAutoRoundQuantizer` in its place
(transformers' own `AutoRoundConfig` still parses the config); with auto-round installed nothing changes unless
`force=True`. Importing ar_kernels changes nothing in transformers: `ar_kernels.load` and `ar eval` make this call,
anyone else makes it explicitly.

    import ar_kernels
    ar_kernels.enable_transformers_integration()
    model = AutoModelForCausalLM.from_pretrained("out/model")   # layers as in ar_kernels.load("out/model")
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

QUANT_METHOD = "auto-round"
_original: dict[str, type] = {}


def reference_installed() -> bool:
    """Whether the reference `auto_round` package can be imported."""
    try:
        return importlib.util.find_spec("auto_round") is not None
    except (ImportError, ValueError):
        return False


def _device_of(device_map) -> torch.device:
    from .loading.load import resolve_device

    if isinstance(device_map, dict) and device_map:
        values = [v for v in device_map.values() if v not in ("disk", "meta")]
        device_map = values[0] if values else "cpu"
    if device_map is None:
        return torch.device("cpu")
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    return resolve_device(device_map)


def _backend_name(config) -> str | None:
    from .backends import list_backends

    name = str(getattr(config, "backend", None) or "auto").lower()
    if name != "auto" and name not in {b.name for b in list_backends()}:
        log.warning("auto-round backend %r is not an ar_kernels backend; choosing automatically", name)
        return None
    return None if name == "auto" else name


def _quantizer_class():
    from transformers.quantizers.base import HfQuantizer

    class ArAutoRoundQuantizer(HfQuantizer):
        """Loads pre-quantized auto-round checkpoints with ar_kernels' QuantLinear layers (inference only)."""

        requires_calibration = True

        def validate_environment(self, *args, **kwargs):
            """Nothing to check: ar_kernels is importable, which is all this quantizer needs."""

        def _process_model_before_weight_loading(self, model, dtype=None, device_map=None, checkpoint_files=None,
                                                 **kwargs):
            from .loading.checkpoint import CheckpointReader
            from .loading.load import install_quantized_layers, quantization_config

            if not checkpoint_files:
                raise ValueError("ar_kernels loads auto-round checkpoints from safetensors files only")
            path = Path(checkpoint_files[0]).parent
            dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32
            device, backend = _device_of(device_map), _backend_name(self.quantization_config)
            # transformers fills the layers with the checkpoint's tensors: build them in the checkpoint's layout
            # (torch reference) and repack for the cpu backend once the weights are in
            self._repack = backend is None and device.type == "cpu"
            install_quantized_layers(model, CheckpointReader(path), quantization_config(path), device,
                                     "torch" if self._repack else backend, dtype)
            log.info("ar_kernels: %d quantized layers from %s", len(model.ar_backends), path)
            return model

        def _process_model_after_weight_loading(self, model, **kwargs):
            if getattr(self, "_repack", False):
                _repack_for_cpu(model)
            return model

        @property
        def is_trainable(self) -> bool:
            return False

        def is_serializable(self):
            return False

    return ArAutoRoundQuantizer


def _repack_for_cpu(model) -> None:
    """Swap the loaded torch-reference int layers for the cpu backend's repacked ones where it would be chosen."""
    from .backends import select_backend
    from .qlinear.cpu import CPUIntLinear

    for name in list(model.ar_backends):
        module = model.get_submodule(name)
        chosen, reason = select_backend(module.scheme, module.packing, "cpu", module.in_features,
                                        module.out_features, layer=name)
        if chosen.name == "cpu":
            model.set_submodule(name, CPUIntLinear.from_reference(module))
            model.ar_backends[name] = (chosen.name, reason)


def enable_transformers_integration(force: bool = False) -> bool:
    """Make transformers load quant_method "auto-round" through ar_kernels; returns True when it now does.

    Without `force` the reference quantizer is kept when `auto_round` is importable. Calling it again is harmless;
    `disable_transformers_integration` undoes it.
    """
    if not force and reference_installed():
        return False
    try:
        from transformers.quantizers import auto
    except ImportError:
        return False
    current = auto.AUTO_QUANTIZER_MAPPING.get(QUANT_METHOD)
    if getattr(current, "__name__", "") == "ArAutoRoundQuantizer":
        return True
    _original.setdefault(QUANT_METHOD, current)
    auto.AUTO_QUANTIZER_MAPPING[QUANT_METHOD] = _quantizer_class()
    return True


def disable_transformers_integration() -> None:
    """Give quant_method "auto-round" back to the quantizer transformers had before the integration."""
    if QUANT_METHOD not in _original:
        return
    from transformers.quantizers import auto

    auto.AUTO_QUANTIZER_MAPPING[QUANT_METHOD] = _original.pop(QUANT_METHOD)
