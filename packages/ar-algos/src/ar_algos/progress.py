"""Per-block progress: i/N, loss before -> after, seconds, ETA, peak RAM and VRAM (plain lines when not a TTY)."""

from __future__ import annotations

import resource
import sys
from typing import TextIO

import torch


def peak_ram_gb() -> float:
    """Peak resident memory of this process in GB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def peak_vram_gb() -> float | None:
    """Peak CUDA memory allocated by torch in GB, or None without CUDA."""
    return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None


def fmt_loss(x: float | None) -> str:
    """A loss for display (3 significant digits, "-" when unknown)."""
    return "-" if x is None else f"{x:.3g}"


def _secs(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s < 3600 else f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class Progress:
    """Prints one line per finished block (or other unit: `label`) to `stream` (stderr by default); silent when
    `enabled` is False."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True, label: str = "block"):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.spent = 0.0
        self.timed = 0

    def line(self, index: int, seconds: float, loss_before: float | None, loss_after: float | None) -> str:
        """The text reported for block `index` (0-based) that took `seconds`."""
        self.spent += seconds
        self.timed += 1
        eta = self.spent / self.timed * (self.total - index - 1)
        parts = [f"{self.label} {index + 1}/{self.total}"]
        if loss_before is not None or loss_after is not None:
            parts.append(f"loss {fmt_loss(loss_before)} -> {fmt_loss(loss_after)}")
        parts += [_secs(seconds), f"ETA {_secs(eta)}", f"RAM {peak_ram_gb():.1f} GB"]
        vram = peak_vram_gb()
        if vram is not None:
            parts.append(f"VRAM {vram:.1f} GB")
        text = "  ".join(parts)
        if self.tty:
            done = int(20 * (index + 1) / self.total)
            text = f"[{'#' * done}{'.' * (20 - done)}] {text}"
        return text

    def block(self, index: int, seconds: float, loss_before: float | None = None,
              loss_after: float | None = None) -> None:
        """Report a finished block."""
        text = self.line(index, seconds, loss_before, loss_after)
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """Report a one-off message (resume, lm_head, ...)."""
        if self.enabled:
            print(text, file=self.stream, flush=True)
