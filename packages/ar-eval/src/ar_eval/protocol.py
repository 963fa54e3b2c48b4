"""`EvalProtocol`: how a text is cut into windows and scored; written down next to every number it produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ar_core.errors import DataError, field_error


@dataclass(frozen=True)
class EvalProtocol:
    """Window layout for perplexity and KL divergence.

    seqlen: tokens the model sees per window (the BOS token included when add_bos).
    stride: text tokens between window starts; None means non-overlapping windows (stride = text tokens per window).
        With a smaller stride the overlap is context only: every text token is scored at most once.
    add_bos: put the tokenizer's BOS token in front of each window (then the window's first text token is scored).
    max_windows: score only the first N windows (None: the whole text, the last window may be shorter).
    """

    seqlen: int = 512
    stride: int | None = None
    add_bos: bool = False
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.seqlen, int) or self.seqlen < 2:
            raise field_error(DataError, "seqlen", self.seqlen, "an int >= 2")
        if self.stride is not None and not 1 <= self.stride <= self.span:
            raise field_error(DataError, "stride", self.stride, f"None or 1..{self.span} (text tokens per window)")
        if self.max_windows is not None and self.max_windows < 1:
            raise field_error(DataError, "max_windows", self.max_windows, "None or an int >= 1")

    @property
    def span(self) -> int:
        """Text tokens per window (seqlen minus the BOS slot)."""
        return self.seqlen - int(self.add_bos)

    @property
    def step(self) -> int:
        """Text tokens between window starts."""
        return self.stride or self.span

    def to_dict(self) -> dict:
        """Plain-JSON view, with the effective stride filled in."""
        return {**asdict(self), "stride": self.step}
