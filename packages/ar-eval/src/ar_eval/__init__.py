"""ar-eval: perplexity, KL divergence and top-1 agreement against the 16-bit model, size and bits per weight,
an lm-eval wrapper, and comparison tables and plots of several runs."""

from .compare import compare_table, plot_quality
from .divergence import DivergenceResult, kl_divergence
from .perplexity import PerplexityResult, perplexity
from .protocol import EvalProtocol
from .report import evaluate, load_report, save_report
from .size import SizeReport, size_report
from .text import load_text
from .windows import plan_windows, tokenize

__version__ = "0.1.0"

__all__ = ["EvalProtocol", "perplexity", "PerplexityResult", "kl_divergence", "DivergenceResult", "evaluate",
           "save_report", "load_report", "size_report", "SizeReport", "load_text", "plan_windows", "tokenize",
           "compare_table", "plot_quality"]
