"""ar-mllm: Vision-language model support: templates, processors, multimodal calibration and AutoRoundMLLM."""

from .autoround import AutoRoundMLLM, load_vlm
from .blocks import block_lists, find_mllm_blocks, nontext_linears
from .processors import PROCESSORS, Processor, get_processor, register_processor
from .templates import TEMPLATES, Template, TemplateError, get_template, load_template, register_template

__all__ = ["AutoRoundMLLM", "PROCESSORS", "Processor", "TEMPLATES", "Template", "TemplateError", "block_lists",
           "find_mllm_blocks", "get_processor", "get_template", "load_template", "load_vlm", "nontext_linears", "register_processor",
           "register_template"]
__version__ = "0.1.0"
