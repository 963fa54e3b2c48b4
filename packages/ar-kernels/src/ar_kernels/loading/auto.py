"""Which transformers class a checkpoint's config builds: a causal LM, or a vision-language model.

Vision-language checkpoints (LLaVA, Qwen2-VL, Mllama, Gemma-3, Idefics3, Mistral-3, ...) are built with
AutoModelForImageTextToText, so their tensor names ("model.language_model.layers.0...", "model.vision_tower...")
match the class that wrote them; a model type no auto class knows falls back to the class named in `architectures`.
Everything else (and remote code) goes through AutoModelForCausalLM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def model_class(config: Any) -> Any:
    """The transformers class (an auto class or a model class) that builds the model of `config`."""
    import transformers
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)

    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return transformers.AutoModelForImageTextToText
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "auto_map", None):
        return transformers.AutoModelForCausalLM
    architecture = next(iter(getattr(config, "architectures", None) or []), None)
    cls = getattr(transformers, architecture, None) if isinstance(architecture, str) else None
    is_model = isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
    return cls if is_model else transformers.AutoModelForCausalLM


def from_config(config: Any, dtype: torch.dtype, trust_remote_code: bool = False) -> nn.Module:
    """A randomly initialised (or, under no_init_weights / the meta device, uninitialised) model of `config`."""
    cls = model_class(config)
    if hasattr(cls, "from_config"):  # an auto class
        return cls.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    return cls._from_config(config, dtype=dtype)
