"""`ar quantize --device_map`, `--nblocks` and the other SignRound switches: how they reach AutoRound (no model is
loaded)."""

import pytest
import torch

from ar_cli.flags import UsageError
from ar_cli.main import build_parser
from ar_cli.quantize_cmd import autoround_kwargs
from ar_algos import AutoRound
from ar_algos.config import TuneConfig
from ar_core.presets import parse_scheme

KNOBS = set(TuneConfig.__dataclass_fields__)


def _kwargs(*argv):
    args, _ = build_parser().parse_known_args(["quantize", "m", *argv])
    return autoround_kwargs(args, parse_scheme("W4A16"), AutoRound, KNOBS)


def test_one_device_is_device_and_a_layer_dict_is_device_map():
    assert _kwargs("--device_map", "cpu")["device"] == "cpu"
    assert _kwargs("--device_map", "{mlp.down_proj:cpu}")["device_map"] == {"mlp.down_proj": "cpu"}
    assert _kwargs("--device_map", "cpu,cpu")["device_map"] == "cpu,cpu"
    assert _kwargs("--nblocks", "2")["nblocks"] == 2


def test_signround_switches_reach_their_knobs():
    kw = _kwargs("--disable_minmax_tuning", "--disable_quanted_input", "--disable_amp", "--not_use_best_mse",
                 "--dynamic_max_gap", "5", "--deterministic")
    assert {k: kw[k] for k in ("enable_minmax_tuning", "enable_quanted_input", "amp", "not_use_best_mse",
                               "dynamic_max_gap", "deterministic")} == \
        dict(enable_minmax_tuning=False, enable_quanted_input=False, amp=False, not_use_best_mse=True,
             dynamic_max_gap=5, deterministic=True)
    assert "amp" not in _kwargs()


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="needs a machine with fewer than two GPUs")
def test_several_gpus_without_them_is_a_usage_error():
    with pytest.raises(UsageError, match="--device_map 0,1"):
        _kwargs("--device_map", "0,1")
