"""Recognise a diffusers pipeline (object or directory) and its denoiser transformer, before any weight loads.

Supported: pipelines whose denoiser is a FLUX transformer (double- and single-stream blocks) or an SD3 MMDiT (joint
blocks). A pipeline directory is checked from its model_index.json alone, so a wrong class or a pipeline without a
transformer (a UNet pipeline) is refused in milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ar_core.errors import ArError, CheckpointError, field_error

INDEX = "model_index.json"
# denoiser transformer class -> its block lists, in the order the transformer runs them
BLOCK_LISTS = {"FluxTransformer2DModel": ("transformer_blocks", "single_transformer_blocks"),
               "SD3Transformer2DModel": ("transformer_blocks",)}
PIPELINES = {"FluxPipeline": "FluxTransformer2DModel", "StableDiffusion3Pipeline": "SD3Transformer2DModel"}


def is_pipeline_dir(path: Any) -> bool:
    """Whether `path` is a local diffusers pipeline directory (it holds model_index.json)."""
    return isinstance(path, (str, Path)) and (Path(path).expanduser() / INDEX).is_file()


def is_pipeline(obj: Any) -> bool:
    """Whether `obj` is a diffusers pipeline object (without importing diffusers when it is not installed)."""
    return any(c.__name__ == "DiffusionPipeline" and c.__module__.startswith("diffusers")
               for c in type(obj).__mro__)


def read_index(path: str | Path) -> dict[str, Any]:
    """The model_index.json of pipeline directory `path` (CheckpointError when missing or not JSON)."""
    index = Path(path).expanduser() / INDEX
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise field_error(CheckpointError, "pipeline", str(path), f"a diffusers pipeline directory with a readable "
                          f"{INDEX} ({exc})") from exc
    if not isinstance(data, dict):
        raise field_error(CheckpointError, "pipeline", str(path), f"a directory whose {INDEX} is a JSON object")
    return data


def check_components(pipeline_class: str, components: dict[str, Any], where: str) -> str:
    """The denoiser transformer class of a pipeline with these components; ArError for an unsupported pipeline
    class, a missing transformer or an unsupported transformer class."""
    if "transformer" not in components or components["transformer"] is None:
        present = sorted(k for k, v in components.items() if v is not None and not k.startswith("_"))
        raise field_error(ArError, "pipeline.transformer", None, f"a pipeline with a DiT denoiser `transformer` "
                          f"({where} has only {', '.join(present)}; UNet pipelines are not supported)")
    if pipeline_class not in PIPELINES:
        raise field_error(ArError, "pipeline class", pipeline_class, f"one of {', '.join(sorted(PIPELINES))} "
                          f"({where})")
    transformer = components["transformer"]
    name = transformer if isinstance(transformer, str) else type(transformer).__name__
    if name not in BLOCK_LISTS:
        raise field_error(ArError, "pipeline.transformer class", name, f"one of {', '.join(sorted(BLOCK_LISTS))}")
    return name


def check_pipeline_dir(path: str | Path) -> str:
    """Check a pipeline directory from its model_index.json; returns the transformer class name."""
    index = read_index(path)
    components = {k: (v[1] if isinstance(v, list) and len(v) == 2 else None) for k, v in index.items()
                  if not k.startswith("_")}
    return check_components(str(index.get("_class_name")), components, f"pipeline directory {str(path)!r}")


def check_pipeline(pipe: Any) -> str:
    """Check a pipeline object; returns its transformer class name."""
    return check_components(type(pipe).__name__, dict(pipe.components), f"{type(pipe).__name__} object")


def require_diffusers() -> None:
    """ArError naming the install command when diffusers is missing."""
    try:
        import diffusers  # noqa: F401
    except ImportError as exc:
        raise ArError("diffusion pipelines need diffusers: pip install 'ar-mllm[diffusion]'") from exc


def load_pipeline_dir(path: str | Path, dtype: Any = None):
    """Load a (16-bit) pipeline directory with diffusers after checking it; dtype: torch dtype of its weights."""
    check_pipeline_dir(path)
    require_diffusers()
    from diffusers import DiffusionPipeline

    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    return DiffusionPipeline.from_pretrained(str(Path(path).expanduser()), **kwargs)


def source_dir(pipe: Any) -> Path | None:
    """The directory `pipe` was loaded from, when it still exists."""
    name = getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path")
    return Path(name) if name and is_pipeline_dir(name) else None
