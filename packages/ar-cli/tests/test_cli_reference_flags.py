"""Flags of the reference auto-round that ar does not take are refused by name, with why and what to use instead."""

import argparse

import pytest

from ar_cli.main import build_parser, main
from ar_cli.flags import UsageError
from ar_cli.reference_flags import REFERENCE_FLAGS, refuse_reference_flags

LEFT_TO_DEVICE_FLAGS = {"--device", "--devices"}  # ar's device flag handling owns these


def _quantize_options() -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices["quantize"]._option_string_actions)


@pytest.fixture(scope="module")
def parser():
    return build_parser()


@pytest.mark.parametrize("flag", sorted(REFERENCE_FLAGS))
def test_each_reference_flag_is_refused_by_name(flag, parser):
    _, unknown = parser.parse_known_args(["quantize", "smollm2-135m", flag, "1"])
    assert flag in unknown  # not taken by ar's parser, not even as an abbreviation
    with pytest.raises(UsageError) as exc:
        refuse_reference_flags(unknown)
    assert str(exc.value) == f"{flag} is a flag of the reference auto-round that ar does not support: " \
                             f"{REFERENCE_FLAGS[flag]}"


@pytest.mark.parametrize("flag", ["--momentum", "--act_group_size", "--bit", "--awq_n_grid"])
def test_ar_exits_2_with_the_message(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "smollm2-135m", flag, "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{flag} is a flag of the reference auto-round that ar does not support: " in err
    assert REFERENCE_FLAGS[flag] in err and "unrecognized arguments" not in err


def test_value_form_and_other_unknown_flags(capsys):
    with pytest.raises(SystemExit):
        main(["quantize", "smollm2-135m", "--momentum=0.9"])
    assert "--momentum is a flag of the reference" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "smollm2-135m", "--no_such_flag"])
    assert exc.value.code == 2 and "unrecognized arguments: --no_such_flag" in capsys.readouterr().err


def test_table_names_no_flag_ar_takes():
    assert not set(REFERENCE_FLAGS) & _quantize_options()


@pytest.mark.slow  # importing auto-round takes about a minute on the CI machine
def test_table_covers_every_flag_of_the_installed_reference():
    parser = pytest.importorskip("auto_round.cli.parser")
    reference = {s for a in parser.build_quantize_parser()._actions for s in a.option_strings}
    missing = reference - _quantize_options() - set(REFERENCE_FLAGS) - LEFT_TO_DEVICE_FLAGS
    assert not missing, sorted(missing)
