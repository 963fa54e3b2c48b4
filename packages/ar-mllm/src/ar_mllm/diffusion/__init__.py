"""Diffusion pipelines (needs `ar-mllm[diffusion]`): quantize a diffusers pipeline's DiT, save, load, evaluate."""

from .autoround import AutoRoundDiffusion
from .pipeline import BLOCK_LISTS, PIPELINES, check_pipeline, check_pipeline_dir, is_pipeline, is_pipeline_dir
from .prompts import DEFAULT_CAPTIONS, load_prompts
from .save import load_pipeline, load_transformer, save_pipeline

__all__ = ["AutoRoundDiffusion", "BLOCK_LISTS", "DEFAULT_CAPTIONS", "PIPELINES", "check_pipeline",
           "check_pipeline_dir", "is_pipeline", "is_pipeline_dir", "load_pipeline", "load_prompts",
           "load_transformer", "save_pipeline"]
