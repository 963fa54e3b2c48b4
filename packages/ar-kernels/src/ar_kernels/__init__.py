"""ar-kernels: QuantLinear backends (torch, triton, mlx) and loading of quantized checkpoints for inference."""

__version__ = "0.1.0"
