"""Reading quantized checkpoints: config plans, safetensors access, the `load` entry point."""
