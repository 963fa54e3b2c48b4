"""`ar quantize --e2e / --e2e_steps N / --e2e_lr X`: the end-to-end stage's flags (in-process, no model loaded)."""

from __future__ import annotations

import pytest

from ar_algos.e2e import DEFAULT_STEPS
from ar_cli.main import build_parser, main
from ar_cli.quantize_cmd import autoround_kwargs
from ar_core.presets import parse_scheme


def _kw(argv):
    def api(model, scheme=None, **knobs):
        """A stand-in with AutoRound's named parameters."""

    args, _ = build_parser().parse_known_args(["quantize", "m", *argv])
    return autoround_kwargs(args, parse_scheme("W4A16"), api, {"e2e_steps", "e2e_lr", "iters"})


@pytest.mark.parametrize("argv, expected", [
    ([], {}),
    (["--e2e"], {"e2e_steps": DEFAULT_STEPS}),
    (["--e2e_steps", "7", "--e2e_lr", "0.01"], {"e2e_steps": 7, "e2e_lr": 0.01}),
    (["--e2e", "--e2e_steps", "7"], {"e2e_steps": 7}),
])
def test_e2e_flags_become_autoround_knobs(argv, expected):
    kw = _kw(argv)
    assert {k: v for k, v in kw.items() if k.startswith("e2e")} == expected


def test_e2e_with_zero_steps_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "m", "--e2e", "--e2e_steps", "0"])
    assert exc.value.code == 2 and "--e2e_steps 0" in capsys.readouterr().err
