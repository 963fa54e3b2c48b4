"""Model-free mode: RTN quantization straight from safetensors shards, shard-parallel, in bounded memory.

    from ar_algos.model_free import quantize_model_free
    result = quantize_model_free("path/to/model", "out/model-w4", scheme="W4A16", workers=4)
    print(result.seconds, result.worker_peak_bytes, result.plan.to_table())

The output is what `AutoRound(..., iters=0, disable_opt_rtn=True).quantize_and_save(out, format)` writes, byte for
byte (tested for the auto_round format: int sym/asym 2/4/8-bit, MXFP4, MXFP8, mixed bits, MoE). That call, given
a local model directory and no tokenizer, samples or block_names, runs this mode itself (disable_model_free=True
opts out).
"""

from .run import ModelFreeResult, fits_model_free, quantize_model_free, supported

__all__ = ["ModelFreeResult", "fits_model_free", "quantize_model_free", "supported"]
