"""ar-kernels: QuantLinear backends (torch, cpu, triton, mlx) and loading of quantized checkpoints for inference.

    load(path, device="cpu"|"auto", backend=None)          quantized checkpoint -> transformers model
    select_backend(scheme, packing, device, in, out)       -> (Backend, reason)
    TORCH_MODULES[packing].from_quantized(qt, bias)        QuantLinear from a QuantizedTensor record
    convert(src_dir, dst_dir, format="auto_round")         GPTQ/AWQ/... checkpoint -> another format, exact codes
    explain(path_or_config, device="cpu")                  per-layer scheme/packing/backend rows, no weights read
    backend_table()                                        capability rows for `ar list backends`
    enable_transformers_integration(force=False)           from_pretrained loads auto-round checkpoints with ours
                                                           (explicit: importing ar_kernels leaves transformers alone)
"""

from .backends import Backend, get_backend, list_backends, register_builtin, select_backend
from .convert import convert
from .explain import backend_table, explain
from .hf_quantizer import disable_transformers_integration, enable_transformers_integration
from .loading.load import load, quantization_config
from .qlinear import (PACKINGS, TORCH_MODULES, AWQLinear, FP8Linear, GPTQLinear, MLXLinear, MXFP4Linear,
                      MXFP8Linear, NVFP4Linear, QuantLinear)

register_builtin()

__version__ = "0.1.0"

__all__ = ["AWQLinear", "Backend", "FP8Linear", "GPTQLinear", "MLXLinear", "MXFP4Linear", "MXFP8Linear",
           "NVFP4Linear", "PACKINGS", "QuantLinear", "TORCH_MODULES", "backend_table", "convert",
           "disable_transformers_integration", "enable_transformers_integration", "explain", "get_backend",
           "list_backends", "load", "quantization_config", "select_backend"]
