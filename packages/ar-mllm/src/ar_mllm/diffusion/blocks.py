"""The denoiser's blocks as one chain of single-tensor blocks, so ar_algos' block driver can tune them.

FLUX and SD3 blocks take two streams (text `encoder_hidden_states`, image `hidden_states`) and return both. Here
each block is wrapped in a `StreamBlock` that takes the two streams concatenated along the sequence ([text, image])
plus `text_len`, and returns them concatenated again, so the driver's hidden state is one tensor and the loss covers
both streams. A StreamBlock holds the block's own submodules under the same names, so layer names (and the
records, layer_config patterns, saved tensors) are the transformer's: "transformer_blocks.0.attn.to_q".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .pipeline import BLOCK_LISTS


class StreamBlock(nn.Module):
    """One FLUX/SD3 block as a single-stream module: forward(x=[text, image], temb, image_rotary_emb, text_len)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        if any(True for _ in block.parameters(recurse=False)):
            raise TypeError(f"{type(block).__name__} holds parameters outside its submodules")
        self.__dict__["block"] = block
        for name, child in block.named_children():
            self.add_module(name, child)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, image_rotary_emb: Any = None,
                text_len: int = 0) -> torch.Tensor:
        """The block's two outputs concatenated as [text, image] (the text input again when it returns None)."""
        text, image = x[:, :text_len], x[:, text_len:]
        kwargs = {"image_rotary_emb": image_rotary_emb} if image_rotary_emb is not None else {}
        text_out, image_out = self.block(hidden_states=image, encoder_hidden_states=text, temb=temb, **kwargs)
        return torch.cat([text if text_out is None else text_out, image_out], dim=1)


class BlockChain(nn.Module):
    """The transformer's block lists as StreamBlocks under the transformer's own names; forward runs them in order
    on calibration samples (see `ar_mllm.diffusion.capture`)."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.lists = BLOCK_LISTS[type(transformer).__name__]
        for name in self.lists:
            self.add_module(name, nn.ModuleList(StreamBlock(b) for b in getattr(transformer, name)))

    @property
    def block_names(self) -> list[str]:
        """Every block, in run order: "transformer_blocks.0", ..., "single_transformer_blocks.0", ..."""
        return [f"{name}.{i}" for name in self.lists for i in range(len(getattr(self, name)))]

    def forward(self, input_ids: torch.Tensor, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                temb: torch.Tensor, rope_cos: torch.Tensor | None = None, rope_sin: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, use_cache: bool = False) -> torch.Tensor:
        """Run every block on one sample (input_ids and attention_mask only give the driver the sequence length)."""
        rope = (rope_cos[0], rope_sin[0]) if rope_cos is not None else None
        x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        for name in self.lists:
            for block in getattr(self, name):
                x = block(x, temb=temb, image_rotary_emb=rope, text_len=encoder_hidden_states.shape[1])
        return x
