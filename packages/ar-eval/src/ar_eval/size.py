"""Size on disk and achieved bits per weight of a checkpoint (directory of safetensors, or a GGUF file).

Two bits-per-weight figures: over the whole model (every stored byte, the 16-bit embeddings, lm_head and norms
included, divided by the 16-bit model's parameters) and over the quantized layers alone (their codes, scales and zero
points divided by their weights' elements).
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from ar_core.errors import CheckpointError
from ar_core.remote_code import remote_code_guard

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".npz")
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}  # safetensors dtypes / GGUF types of unquantized tensors


@dataclass
class SizeReport:
    """Bytes of weight files on disk, bits per weight = 8 * tensor bytes / parameters of the 16-bit model, and
    quantized_bits_per_weight = 8 * bytes of the quantized layers / their weights' elements (None: none found)."""

    disk_bytes: int
    tensor_bytes: int
    n_params: int | None
    bits_per_weight: float | None
    quantized_bits_per_weight: float | None = None

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


def quantized_safetensors_bits(path: Path, files: list[Path], trust_remote_code: bool = False) -> float | None:
    """Bits per weight of the quantized layers of a safetensors directory: the modules storing a non-float tensor
    (packed codes, fp8 weights), all their tensors' bytes over their weights' elements in the 16-bit model."""
    nbytes: dict[str, int] = {}
    packed: set[str] = set()
    for f in files:
        if f.suffix != ".safetensors":
            continue
        for name, t in safetensors_header(f).items():
            module = name.rpartition(".")[0]
            nbytes[module] = nbytes.get(module, 0) + t["data_offsets"][1] - t["data_offsets"][0]
            if t["dtype"] not in FLOAT_DTYPES:
                packed.add(module)
    if not packed:
        return None
    modules = dict(meta_model(path, trust_remote_code).named_modules())
    elements = sum(modules[m].weight.numel() for m in packed if m in modules)
    return 8 * sum(nbytes[m] for m in packed if m in modules) / elements if elements else None


def quantized_gguf_bits(path: Path) -> float | None:
    """Bits per weight of the quantized tensors of a GGUF file (every type but F16/BF16/F32); None without gguf."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    quant = [t for t in GGUFReader(path).tensors if t.tensor_type.name not in FLOAT_DTYPES]
    elements = sum(int(t.n_elements) for t in quant)
    return 8 * sum(int(t.n_bytes) for t in quant) / elements if elements else None


def size_report(path: str | Path, n_params: int | None = None, trust_remote_code: bool = False) -> SizeReport:
    """Size of the checkpoint at `path`; `n_params` defaults to the count from its config.json when there is one."""
    files = weight_files(path)
    disk = sum(f.stat().st_size for f in files)
    tbytes = sum(tensor_bytes(f) for f in files)
    p = Path(path)
    has_config = p.is_dir() and (p / "config.json").is_file()
    if n_params is None and has_config:
        n_params = count_parameters(p, trust_remote_code)
    bpw = 8 * tbytes / n_params if n_params else None
    if p.suffix == ".gguf":
        qbpw = quantized_gguf_bits(p)
    else:
        qbpw = quantized_safetensors_bits(p, files, trust_remote_code) if has_config else None
    return SizeReport(disk, tbytes, n_params, bpw, qbpw)


def describe_size(report: dict) -> str:
    """'<MiB> MiB on disk, <b> bits per weight over <n> parameters (16-bit tensors included), <q> in the quantized
    layers alone' from a SizeReport dict (parts without a value left out)."""
    text = f"{report['disk_bytes'] / 2**20:.1f} MiB on disk"
    if report.get("bits_per_weight"):
        text += f", {report['bits_per_weight']:.3f} bits per weight"
        text += f" over {report['n_params']:,} parameters" if report.get("n_params") else ""
        text += " (16-bit tensors included)"
    if report.get("quantized_bits_per_weight"):
        text += f", {report['quantized_bits_per_weight']:.3f} in the quantized layers alone"
    return text


def saved_summary(path: str | Path, trust_remote_code: bool = False) -> str:
    """describe_size of a just-saved checkpoint; its size on disk alone when counting its parameters would need the
    model's own code and `trust_remote_code` is off."""
    try:
        return describe_size(size_report(path, trust_remote_code=trust_remote_code).to_dict())
    except CheckpointError:
        disk = sum(f.stat().st_size for f in weight_files(path))
        return f"{disk / 2**20:.1f} MiB on disk (parameters not counted: the model's own code was not run)"
