"""Find the language tower's decoder blocks of a vision-language model, and the non-text (vision/audio) modules.

Block lists are the top-level `nn.ModuleList`s of the model (lists nested inside a block, like MoE experts, are
not lists of blocks). A list whose path has a vision or projector key belongs to the vision side, one with an
audio key to the audio side; the longest remaining list is the language tower. By default only the language
tower is quantized; `quant_nontext_module=True` adds the vision blocks (audio blocks are never quantized).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ar_core.errors import ArError

VISION_KEYS = ("vision", "visual", "image", "img")
AUDIO_KEYS = ("audio", "speech", "wav", "waveform")
# Modules that connect a non-text tower to the language model; they belong to the non-text side.
PROJECTOR_KEYS = ("multi_modal_projector", "multimodal_projector", "mm_projector", "connector", "patch_merger",
                  "vision_language_adapter", "pre_mm_projector_norm", "image_newline", "vqmodel")


def modality(path: str) -> str:
    """'audio', 'vision' or 'text': the side of the model a module path belongs to, judged by its name parts."""
    parts = path.lower().split(".")
    if any(key in part for part in parts for key in AUDIO_KEYS):
        return "audio"
    if any(key in part for part in parts for key in VISION_KEYS + PROJECTOR_KEYS):
        return "vision"
    return "text"


@dataclass(frozen=True)
class BlockLists:
    """The model's block lists by side; `text` is the language tower (names like "model.language_model.layers.0")."""

    text: list[str]
    vision: list[list[str]]
    audio: list[list[str]]
    other_text: list[list[str]]


def _top_level_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    found: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        if not any(True for _ in module.parameters()):
            continue
        found.append((name, module))
    return found


def block_lists(model: nn.Module) -> BlockLists:
    """Every top-level block list of `model`, split into the language tower, vision, audio and other text lists."""
    sides: dict[str, list[list[str]]] = {"text": [], "vision": [], "audio": []}
    for name, module in _top_level_lists(model):
        sides[modality(name)].append([f"{name}.{i}" for i in range(len(module))])
    if not sides["text"]:
        raise ArError(f"model={type(model).__name__} has no list of language-model blocks (found only "
                      f"{sum(len(v) for v in sides.values())} vision/audio lists); cannot quantize its text tower")
    text = max(sides["text"], key=len)
    others = [blocks for blocks in sides["text"] if blocks is not text]
    return BlockLists(text=text, vision=sides["vision"], audio=sides["audio"], other_text=others)


def find_mllm_blocks(model: nn.Module, quant_nontext_module: bool = False) -> list[list[str]]:
    """Block lists to quantize: [language tower], plus each vision block list when quant_nontext_module=True."""
    if not isinstance(quant_nontext_module, bool):
        raise ArError(f"quant_nontext_module={quant_nontext_module!r} is not allowed: True or False")
    lists = block_lists(model)
    return [lists.text] + (list(lists.vision) if quant_nontext_module else [])


def nontext_linears(model: nn.Module) -> list[str]:
    """Names of the nn.Linear layers on the vision side (towers and projectors), in model order.

    The out_proj of an nn.MultiheadAttention (SigLIP's pooling head) is left out: torch reads its `.weight`
    directly, so it cannot become a quantized layer.
    """
    inside_mha = {f"{name}.out_proj" for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and modality(name) == "vision" and name not in inside_mha]
