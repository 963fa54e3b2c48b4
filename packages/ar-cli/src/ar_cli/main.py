"""`ar`: the meta-CLI dispatcher. Each subcommand is one small module with `add_parser(subparsers)` and `run(args)`.

Exit codes: 0 success; 1 an ArError while running (message on stderr, no traceback); 2 a bad, unknown or
contradictory flag (argparse's usage error, naming the flag).
"""

from __future__ import annotations

import argparse
import os
import sys

from ar_core.errors import ArError

from . import convert_cmd, eval_cmd, inspect_cmd, list_cmd, quantize_cmd
from .flags import UsageError
from .quiet import silence_enum_pytree_notices
from .reference_flags import refuse_reference_flags
from .surface import cli_message

COMMANDS = {"quantize": quantize_cmd, "eval": eval_cmd, "list": list_cmd, "inspect": inspect_cmd,
            "convert": convert_cmd}


def build_parser(prog: str = "ar") -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(prog=prog, description="Quantize, evaluate and inspect LLMs (ar toolkit).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('ar_cli').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        cmd = module.add_parser(sub)
        cmd.set_defaults(subparser=cmd)
    return parser


def main(argv: list[str] | None = None, prog: str = "ar") -> int:
    """Parse `argv` (default sys.argv[1:]), run the command and return its exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    silence_enum_pytree_notices()
    parser = build_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        try:
            refuse_reference_flags(unknown)
        except UsageError as exc:
            args.subparser.error(str(exc))
        args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return COMMANDS[args.command].run(args) or 0
    except UsageError as exc:
        args.subparser.error(cli_message(str(exc)))
    except ArError as exc:
        print(f"{prog} {args.command}: error: {cli_message(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
