"""Size on disk and achieved bits per weight of a checkpoint (directory of safetensors, or a GGUF file)."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from ar_core.errors import CheckpointError
from ar_core.remote_code import remote_code_guard

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".npz")


@dataclass
class SizeReport:
    """Bytes of weight files on disk, and bits per weight = 8 * tensor bytes / parameters of the 16-bit model."""

    disk_bytes: int
    tensor_bytes: int
    n_params: int | None
    bits_per_weight: float | None

    def to_dict(self) -> dict:
        """Plain-JSON view."""
        return asdict(self)


def weight_files(path: str | Path) -> list[Path]:
    """The weight files of a checkpoint directory (or the file itself)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    files = sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise CheckpointError(f"checkpoint {str(p)!r} holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    return files


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor name -> dtype, shape, data_offsets), without reading data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def tensor_bytes(path: Path) -> int:
    """Bytes of tensor data in one weight file (the whole file when it is not safetensors)."""
    if path.suffix != ".safetensors":
        return path.stat().st_size
    return sum(end - start for start, end in (t["data_offsets"] for t in safetensors_header(path).values()))


def meta_model(config_dir: str | Path, trust_remote_code: bool = False):
    """The unquantized CausalLM (or vision-language model) described by `config_dir`/config.json, built on the meta
    device (no memory); the model's own code runs only with `trust_remote_code=True`."""
    from transformers import AutoConfig

    from ar_kernels.loading.load import meta_skeleton

    with remote_code_guard(config_dir, trust_remote_code):
        config = AutoConfig.from_pretrained(config_dir, trust_remote_code=trust_remote_code)
        return meta_skeleton(config, trust_remote_code)


def count_parameters(config_dir: str | Path, trust_remote_code: bool = False) -> int:
    """Parameters of the unquantized model described by `config_dir`/config.json (tied weights counted once)."""
    return sum(p.numel() for p in meta_model(config_dir, trust_remote_code).parameters())


def size_report(path: str | Path, n_params: int | None = None, trust_remote_code: bool = False) -> SizeReport:
    """Size of the checkpoint at `path`; `n_params` defaults to the count from its config.json when there is one."""
    files = weight_files(path)
    disk = sum(f.stat().st_size for f in files)
    tbytes = sum(tensor_bytes(f) for f in files)
    p = Path(path)
    if n_params is None and p.is_dir() and (p / "config.json").is_file():
        n_params = count_parameters(p, trust_remote_code)
    bpw = 8 * tbytes / n_params if n_params else None
    return SizeReport(disk, tbytes, n_params, bpw)
