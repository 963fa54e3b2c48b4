"""`AutoRoundMLLM`: quantize the language tower of a vision-language model with ar_algos' AutoRound.

By default only the language model's blocks are quantized (vision tower and projector stay 16-bit) and the
calibration is text-only. Image-text calibration is used for conversation datasets, for models that need images
(mllama) and with quant_nontext_module=True, which also quantizes the vision side's linears (with RTN: ar_algos
tunes one chain of blocks). The processor, its chat template and the ar template are saved with the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ar_algos import AutoRound
from ar_algos.config import make_config
from ar_core.errors import ArError, CheckpointError, field_error
from ar_core.remote_code import remote_code_guard

from .blocks import find_mllm_blocks, nontext_linears
from .calib import MAX_IMAGE_TEXT_SEQLEN, image_text_dataset, image_text_samples, needs_image_data, prebuilt_samples
from .processors import get_processor
from .templates import get_template

TEMPLATE_FILE = "ar_mllm_template.json"


def load_vlm(path: str | Path, dtype: Any = "auto", trust_remote_code: bool = False):
    """(model, tokenizer, processor) of a local vision-language model directory (processor None if it has none)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise field_error(CheckpointError, "model", str(path), "a model directory with config.json")
    try:
        with remote_code_guard(folder, trust_remote_code):
            model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype,
                                                                trust_remote_code=trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except CheckpointError:
        raise
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load vision-language model {str(path)!r}: {exc}") from exc
    try:
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError):
        processor = None
    return model.eval(), tokenizer, processor


class AutoRoundMLLM:
    """Quantize a vision-language model (object or local directory) block by block through ar_algos.AutoRound.

    processor / image_processor: the Hugging Face processor objects (needed for image-text calibration).
    template: a model_type, JSON file or Template (default: the model's model_type, else "default").
    dataset: text (anything ar_algos takes) or image-text data ("skimage", a llava-style JSON file, a list of
    records, or a list of ready model inputs with pixel_values etc.) with media under `extra_data_dir` ("dir" or
    "image=d1,video=d2"); default: the template's default_dataset, else ar_algos' text default.
    quant_nontext_module: also quantize the vision tower and projector linears. Other arguments go to AutoRound.
    """

    def __init__(self, model: nn.Module | str | Path, tokenizer: Any = None, processor: Any = None,
                 image_processor: Any = None, scheme: Any = "W4A16", dataset: Any = None, extra_data_dir: Any = None,
                 template: Any = None, quant_nontext_module: bool = False, layer_config: dict | None = None,
                 recipe: str | None = None, iters: int | None = None, nsamples: int | None = None,
                 seqlen: int | None = None, seed: int | None = None, **kwargs: Any):
        if isinstance(model, (str, Path)):
            trust = kwargs.get("trust_remote_code", False)
            model, loaded_tokenizer, loaded_processor = load_vlm(model, trust_remote_code=trust)
            tokenizer, processor = tokenizer or loaded_tokenizer, processor or loaded_processor
        if not isinstance(model, nn.Module):
            raise field_error(ArError, "model", type(model).__name__, "a torch nn.Module or a model directory")
        self.model = model.eval()
        self.processor, self.image_processor = processor, image_processor
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        self.template = get_template(template if template is not None else model_type)
        self.mm = get_processor(self.template.processor, tokenizer, processor, image_processor, self.template)
        self.tokenizer = self.mm.tokenizer
        dataset = dataset if dataset is not None else self.template.default_dataset
        self.block_lists = find_mllm_blocks(model, quant_nontext_module)
        cfg = make_config(recipe, iters=iters, nsamples=nsamples, seqlen=seqlen, seed=seed)
        self.samples: list[dict[str, torch.Tensor]] | None = None
        if cfg.calibrated and needs_image_data(model_type, dataset, quant_nontext_module):
            self.samples = self._image_samples(dataset, extra_data_dir, cfg, model_type)
            dataset, nsamples, seqlen = None, len(self.samples), self.samples[0]["input_ids"].shape[1]
        layer_config = dict(layer_config or {})
        if quant_nontext_module:  # {} = the default scheme (with the bits/group_size/... overrides)
            layer_config.update({n: {} for n in nontext_linears(model) if n not in layer_config})
        self.autoround = AutoRound(model, self.tokenizer, scheme=scheme, layer_config=layer_config or None,
                                   dataset=dataset, samples=self.samples, block_names=self.block_lists[0],
                                   recipe=recipe, iters=iters, nsamples=nsamples, seqlen=seqlen, seed=seed, **kwargs)

    def _image_samples(self, dataset: Any, extra_data_dir: Any, cfg, model_type: str | None) -> list[dict]:
        """Image-text calibration inputs: `dataset` as ready inputs, or conversations through the processor."""
        samples = prebuilt_samples(dataset)
        if samples is None:
            if self.mm.processor is None:
                raise field_error(ArError, "processor", None, f"a Hugging Face processor: {model_type!r} "
                                  "calibrates on image-text data here (or pass dataset= as ready model inputs)")
            samples = image_text_samples(self.mm, image_text_dataset(dataset), extra_data_dir, cfg.nsamples,
                                         min(cfg.seqlen, MAX_IMAGE_TEXT_SEQLEN), cfg.seed)
        return samples[:cfg.nsamples]

    def quantize(self, work_dir: str | Path | None = None):
        """Quantize; returns (model with QDQ weights, layer name -> QuantizedTensor) like AutoRound.quantize."""
        return self.autoround.quantize(work_dir)

    def save_quantized(self, output_dir: str | Path, format: str | list[str] = "auto_round",
                       inplace: bool = True, overwrite: bool = False, unloadable: str = "warn") -> list[Path]:
        """Write each format (see AutoRound.save_quantized), then the processor files and the ar template."""
        paths = self.autoround.save_quantized(output_dir, format, inplace, overwrite=overwrite, unloadable=unloadable)
        for path in paths:
            self.save_processor_files(path)
        return paths

    def quantize_and_save(self, output_dir: str | Path = "tmp_autoround", format: str | list[str] = "auto_round",
                          overwrite: bool = False, unloadable: str = "warn"):
        """Quantize and save in each format (an existing `output_dir` is an error unless `overwrite`; `unloadable`:
        see AutoRound.save_quantized); returns (model, output paths)."""
        model, paths = self.autoround.quantize_and_save(output_dir, format, overwrite, unloadable)
        for path in paths:
            self.save_processor_files(path)
        return model, paths

    def save_processor_files(self, path: str | Path) -> None:
        """Save the processor (image processor, tokenizer, chat template) and the ar template into `path`."""
        path = Path(path)
        if not path.is_dir():  # single-file formats (GGUF) carry no processor files
            return
        for obj in (self.processor, self.image_processor):
            if obj is not None:
                obj.save_pretrained(str(path))
        (path / TEMPLATE_FILE).write_text(json.dumps(self.template.to_dict(), indent=1) + "\n")
