"""Helpers for tests that drive the `ar` command in-process."""

from __future__ import annotations

from .main import main


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """Run `ar ARGV` in-process under pytest's `capsys`; (exit code, stderr), asserting no traceback was printed.
    Usage errors exit 2 through argparse."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err
