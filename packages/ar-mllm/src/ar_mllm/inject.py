"""Feed the non-text inputs of image-text calibration samples (pixel_values, image_grid_thw, ...) to the model.

ar_algos runs calibration forwards as `model(input_ids=..., attention_mask=...)`. While `extra_inputs` is active,
a forward pre-hook recognises a calibration sample by its input_ids and adds that sample's other inputs.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

TEXT_KEYS = ("input_ids", "attention_mask")


@contextmanager
def extra_inputs(model: nn.Module, samples: list[dict[str, torch.Tensor]] | None) -> Iterator[None]:
    """While active, a forward of `model` given a sample's input_ids also receives that sample's other inputs.

    Samples are looked up from the one after the last match (calibration walks them in order), so equal input_ids
    with different images still pair with the right sample. Floating inputs take the model's dtype.
    """
    extras = [{k: v for k, v in s.items() if k not in TEXT_KEYS} for s in samples or []]
    if not any(extras):
        yield
        return
    dtype = next(model.parameters()).dtype
    cursor = [0]

    def add_extras(_module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None:
            return None
        for step in range(len(samples)):
            i = (cursor[0] + step) % len(samples)
            ref = samples[i]["input_ids"]
            if ref.shape == ids.shape and torch.equal(ref, ids.to(ref.device)):
                cursor[0] = i + 1
                moved = {k: v.to(ids.device, dtype if v.is_floating_point() else v.dtype)
                         for k, v in extras[i].items()}
                return args, {**kwargs, **moved}
        return None

    handle = model.register_forward_pre_hook(add_extras, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
