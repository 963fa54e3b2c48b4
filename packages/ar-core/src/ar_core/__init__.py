"""ar-core: Schemes, presets, quantization math, packing codecs, layer-config plans and plugin registries of the ar toolkit."""

__version__ = "0.1.0"
