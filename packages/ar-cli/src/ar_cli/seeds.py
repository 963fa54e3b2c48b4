"""Console scripts with the reference tool's names: auto-round, auto-round-best, -light, -opt-rtn, -rtn, -mllm.

`auto-round MODEL ...` means `ar quantize MODEL ...` (and `auto-round eval|list|inspect ...` the other commands);
the recipe scripts fix --recipe; auto-round-mllm quantizes vision-language models (--mllm).
"""

from __future__ import annotations

import sys

from .main import COMMANDS, main

LIST_ALIASES = {"format": "formats", "alg": "algorithms", "scheme": "schemes", "backend": "backends"}


def _run(prog: str, extra: list[str], argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        if args[0] == "list" and len(args) > 1:
            args[1] = LIST_ALIASES.get(args[1], args[1])
        return main(args, prog=prog)
    if extra and any(a == "--recipe" or a.startswith("--recipe=") for a in args):
        print(f"{prog}: error: {prog} fixes {' '.join(extra)}; use `ar quantize --recipe ...` to choose another",
              file=sys.stderr)
        return 2
    return main(["quantize", *extra, *args], prog=prog)


def auto_round(argv: list[str] | None = None) -> int:
    """`auto-round` / `auto_round`: quantize with the default recipe (or run a subcommand)."""
    return _run("auto-round", [], argv)


def auto_round_best(argv: list[str] | None = None) -> int:
    """`auto-round-best`: the best recipe (1000 iters, 512 samples)."""
    return _run("auto-round-best", ["--recipe", "best"], argv)


def auto_round_light(argv: list[str] | None = None) -> int:
    """`auto-round-light`: the light recipe (50 iters, lr 5e-3)."""
    return _run("auto-round-light", ["--recipe", "light"], argv)


def auto_round_opt_rtn(argv: list[str] | None = None) -> int:
    """`auto-round-opt-rtn`: optimized RTN (no tuning)."""
    return _run("auto-round-opt-rtn", ["--recipe", "opt-rtn"], argv)


def auto_round_rtn(argv: list[str] | None = None) -> int:
    """`auto-round-rtn`: plain round-to-nearest."""
    return _run("auto-round-rtn", ["--recipe", "rtn"], argv)


def auto_round_mllm(argv: list[str] | None = None) -> int:
    """`auto-round-mllm`: quantize a vision-language model (ar-mllm)."""
    return _run("auto-round-mllm", ["--mllm"], argv)
