"""ar-core: schemes, presets, quantization math, packing codecs, layer-config plans and plugin registries.

Light on purpose (torch, numpy, safetensors only) so other frameworks can vendor it.
"""

from .errors import ArError
from .layer_config import LayerInfo, Plan, resolve_plan
from .presets import PRESETS, get_preset, parse_scheme
from .qtensor import QuantizedTensor
from .scheme import QuantScheme

__version__ = "0.1.0"
__all__ = ["PRESETS", "ArError", "LayerInfo", "Plan", "resolve_plan", "QuantScheme", "QuantizedTensor", "get_preset", "parse_scheme"]
