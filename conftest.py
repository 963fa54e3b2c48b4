"""Session-wide test settings: offline hub, and triton's CPU interpreter when no GPU is present.

TRITON_INTERPRET must be set before any module decorates a triton kernel, so it is set here, before collection.
"""

import os

import torch

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
