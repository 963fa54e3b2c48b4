"""The Markdown tables of a GPU proof run (one per section), from the JSON report that run.py writes."""

from __future__ import annotations


def _num(x, fmt: str = ".3g") -> str:
    return "–" if x is None else format(x, fmt)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def tests_table(rows: list[dict]) -> list[str]:
    """pytest -m cuda: counts and the failed tests."""
    lines = _table(["passed", "failed", "errors", "skipped", "seconds"],
                   [[str(r["passed"]), str(r["failed"]), str(r["errors"]), str(r["skipped"]), f"{r['seconds']:.0f}"]
                    for r in rows])
    failed = [name for r in rows for name in r["failed_tests"]]
    return lines + ([""] + [f"- failed: `{name}`" for name in failed] if failed else [])


def kernels_table(rows: list[dict]) -> list[str]:
    """One row per (bits, shape, tokens): ours against the bf16 matmul."""
    head = ["W", "in×out", "tokens", "backend", "µs", "bf16 µs", "speed-up", "GB/s", "roofline", "bf16 GB/s",
            "bf16 roofline", "TFLOP/s"]
    return _table(head, [[f"W{r['bits']}G{r['group_size']}", f"{r['in']}×{r['out']}", str(r["tokens"]), r["backend"],
                          _num(r["us"], ".1f"), _num(r["bf16_us"], ".1f"), _num(r["speedup"], ".2f") + "×",
                          _num(r["gb_s"], ".0f"), _pct(r["roofline"]), _num(r["bf16_gb_s"], ".0f"),
                          _pct(r["bf16_roofline"]), _num(r["tflops"], ".1f")] for r in rows])


def signround_table(rows: list[dict]) -> list[str]:
    """One row per system: time per block, peak memory, losses (only the logged block losses when cut short)."""
    head = ["system", "status", "s/block", "total s", "peak VRAM GiB", "peak RSS GiB", "last block loss (own log)",
            "last-block output MSE vs 16-bit"]
    return _table(head, [[r["system"], r["status"], _num(r["seconds_per_block"], ".1f"), _num(r["seconds"], ".1f"),
                          _num(r["peak_vram_gib"], ".2f"), _num(r["peak_rss_gib"], ".2f"),
                          _num(r["final_block_loss"]), _num(r["output_mse"])] for r in rows])


def generate_table(rows: list[dict]) -> list[str]:
    """Load + generate through the triton backend, checked against the torch backend."""
    head = ["backends", "layers", "dtype", "logits rel. err vs torch", "same greedy tokens", "triton tok/s",
            "torch tok/s"]
    return _table(head, [[",".join(r["backends"]), str(r["layers"]), r["dtype"], _num(r["logits_rel_err"], ".2e"),
                          "yes" if r["same_tokens"] else "no", _num(r["tokens_per_s"], ".1f"),
                          _num(r["torch_backend_tokens_per_s"], ".1f")] for r in rows])


TABLES = {"tests": ("CUDA tests (`pytest -m cuda`)", tests_table),
          "kernels": ("Kernel table (ours vs bf16 `torch.matmul`)", kernels_table),
          "signround": ("SignRound, ours vs auto-round 0.16.1", signround_table),
          "generate": ("auto_round checkpoint: load + generate through the triton backend", generate_table)}


def markdown(report: dict) -> str:
    """The whole Markdown report: a header naming the device and mode, then one titled table per section."""
    mode = "dry run (CPU, tiny shapes, triton interpreter)" if report["dry"] else "full run"
    lines = [f"# GPU proof: {report['device']}", "",
             f"{mode}; torch {report['torch']}, triton {report['triton']}; {report['seconds']:.0f} s of a "
             f"{report['budget_s']:.0f} s budget; started {report['started']}"]
    for name, section in report["sections"].items():
        title, table = TABLES[name]
        lines += ["", f"## {title}", "",
                  f"{section['status']} in {section['seconds']:.0f} s (budget {section['budget_s']:.0f} s)"
                  + (f": {section['note']}" if section["note"] else "")]
        if section["rows"]:
            lines += [""] + table(section["rows"])
    return "\n".join(lines) + "\n"
