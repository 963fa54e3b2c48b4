"""Model-free mode: RTN quantization straight from safetensors shards, shard-parallel, in bounded memory."""

from .run import ModelFreeResult, quantize_model_free, supported

__all__ = ["ModelFreeResult", "quantize_model_free", "supported"]
