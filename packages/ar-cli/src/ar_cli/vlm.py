"""Recognise vision-language model configs, so `ar quantize` routes them to ar-mllm's AutoRoundMLLM."""

from __future__ import annotations

import json
from pathlib import Path


def vlm_evidence(config: dict) -> str | None:
    """Why `config` (a config.json dict) describes a vision-language model, or None when it does not.

    A `vision_config` is enough; a `text_config` or a *ForConditionalGeneration architecture counts only together
    with a vision or image field (so text-only encoder-decoders such as T5 stay with AutoRound).
    """
    if isinstance(config.get("vision_config"), dict):
        return "its config has a vision_config"
    vision = sorted(k for k in config if "vision" in k or "image" in k)
    if not vision:
        return None
    if "text_config" in config:
        return f"its config has a text_config and {vision[0]}"
    arch = next((a for a in config.get("architectures") or [] if a.endswith("ForConditionalGeneration")), None)
    return f"architecture {arch} with {vision[0]}" if arch else None


def detect_vlm(model: str) -> str | None:
    """vlm_evidence of a local model directory's config.json; None for anything else (hub ids, embedded names)."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return vlm_evidence(config) if isinstance(config, dict) else None
