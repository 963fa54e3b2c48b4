"""ar-mllm: Vision-language model support: templates, processors, multimodal calibration and AutoRoundMLLM."""

__version__ = "0.1.0"
