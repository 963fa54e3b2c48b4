"""ar-eval: Perplexity, KL divergence and top-1 agreement against the 16-bit model, and an lm-eval wrapper."""

__version__ = "0.1.0"
