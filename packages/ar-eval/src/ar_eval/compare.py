"""Comparing several evaluation reports: a text table and a PNG plot of quality against bits per weight."""

from __future__ import annotations

import math
from pathlib import Path

from ar_core.errors import DataError

COLUMNS = (("name", "run", "{}"), ("bits_per_weight", "bpw", "{:.3f}"), ("disk_bytes", "size MiB", None),
           ("quantized_bits_per_weight", "q-layer bpw", "{:.3f}"), ("ppl", "ppl", "{:.3f}"),
           ("kl_mean", "KL mean", "{:.5f}"), ("kl_p99", "KL p99", "{:.4f}"),
           ("top1_agreement", "top-1 %", None))


def _cell(report: dict, key: str, fmt: str | None) -> str:
    value = report.get(key)
    if value is None:
        return "-"
    if key == "disk_bytes":
        return f"{value / 2**20:.1f}"
    if key == "top1_agreement":
        return f"{100 * value:.2f}"
    return fmt.format(value)


def _by_bits(reports: list[dict]) -> list[dict]:
    return sorted(reports, key=lambda r: (r.get("bits_per_weight") is None, r.get("bits_per_weight") or 0))


def compare_table(reports: list[dict]) -> str:
    """A fixed-width table of the reports, sorted by bits per weight (runs without a size last)."""
    if not reports:
        raise DataError("compare needs at least one report")
    rows = [[title for _, title, _ in COLUMNS]]
    rows += [[_cell(r, key, fmt) for key, _, fmt in COLUMNS] for r in _by_bits(reports)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_quality(reports: list[dict], out_png: str | Path, metric: str = "ppl") -> Path:
    """Plot `metric` (ppl, kl_mean, kl_p99 or top1_agreement) against bits per weight; write a PNG, return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in _by_bits(reports) if r.get("bits_per_weight") is not None and r.get(metric) is not None]
    if not points:
        raise DataError(f"no report has both bits_per_weight and {metric!r}; nothing to plot")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs, ys = [r["bits_per_weight"] for r in points], [r[metric] for r in points]
    ax.plot(xs, ys, "o")
    for r, x, y in zip(points, xs, ys):
        ax.annotate(r.get("name", "?"), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    refs = {r["ppl_reference"] for r in points if metric == "ppl" and r.get("ppl_reference")}
    for ref in refs:
        ax.axhline(ref, linestyle="--", linewidth=0.8, color="gray", label=f"16-bit reference {ref:.2f}")
    if metric == "ppl" and max(ys) / min(ys) > 10 and all(math.isfinite(y) for y in ys):
        ax.set_yscale("log")
    ax.set_xlabel("bits per weight")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if refs:
        ax.legend(fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
