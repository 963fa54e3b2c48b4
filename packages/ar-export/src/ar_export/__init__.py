"""ar-export: Writers for quantized checkpoints: auto_round, auto_gptq, auto_awq, llm_compressor, gguf, mlx, fp8, fake."""

__version__ = "0.1.0"
