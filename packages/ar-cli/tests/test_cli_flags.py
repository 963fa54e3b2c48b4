"""`ar quantize` flag parsing and validation, in-process (no model is loaded: every case fails or stops early)."""

from __future__ import annotations

import pytest

from ar_cli.flags import UsageError, group_size, relaxed_json
from ar_cli.main import build_parser, main
from ar_cli.quantize_cmd import autoround_kwargs, build_scheme, check_flags, output_name, route_algorithm
from ar_core.presets import parse_scheme


def _usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["quantize", "m", "--foo", "1"], "--foo"),
    (["quantize"], "give the model once"),
    (["quantize", "m", "--model", "n"], "give the model once"),
    (["quantize", "m", "--iter", "5"], "--iter"),  # no silent abbreviation of --iters
    (["quantize", "m", "--iters", "0", "--lr", "0.1"], "--lr"),
    (["quantize", "m", "--recipe", "rtn", "--minmax_lr", "0.1"], "--minmax_lr"),
    (["quantize", "m", "--recipe", "opt-rtn", "--adam"], "--adam"),
    (["quantize", "m", "--bits", "7"], "bits=7"),
    (["quantize", "m", "--scheme", "W9"], "scheme='W9'"),
    (["quantize", "m", "--format", "auto_round,foo"], "'foo'"),
    (["quantize", "m", "--format", "gguf:q4_k_m", "--scheme", "W4A16"], "contradicts --scheme"),
    (["quantize", "m", "--scheme", "GGUF:Q4_K_M", "--bits", "3"], "bits"),
    (["quantize", "m", "--quant_lm_head", "--format", "auto_gptq"], "--quant_lm_head"),
    (["quantize", "m", "--options", "W2A16,W4A16"], "--avg_bits"),
    (["quantize", "m", "--avg_bits", "3.5"], "needs --options"),
    (["quantize", "m", "--model_free", "--iters", "5"], "contradicts --iters 5"),
    (["quantize", "m", "--model_free_workers", "2"], "only applies with --model_free"),
    (["quantize", "m", "--model_free", "--model_free_workers", "0"], "processes >= 1"),
    (["quantize", "m", "--algorithm", "autoscheme"], "not available yet"),
    (["quantize", "m", "--algorithm", "awq,rtn,signround"], "not available yet"),
    (["quantize", "m", "--algorithm", "awq", "--iters", "5"], "contradicts --iters 5"),
    (["quantize", "m", "--algorithm", "bogus"], "'bogus'"),
    (["quantize", "m", "--algorithm", "rtn", "--iters", "5"], "contradicts --iters 5"),
    (["quantize", "m", "--algorithm", "signround", "--recipe", "rtn"], "contradicts --recipe rtn"),
    (["quantize", "m", "--device_map", "0,1"], "several devices"),
    (["quantize", "m", "--layer_config", "{k_proj:{bits:8}"], "--layer_config"),
    (["quantize", "m", "--limit", "5"], "--limit"),
    (["quantize", "m", "--group_size", "a"], "--group_size"),
    (["eval"], "at least one MODEL"),
    (["eval", "m", "--seqlen", "1"], "seqlen=1"),
    (["eval", "m", "--windows", "-1"], "--windows"),
    (["eval", "m", "--limit", "3"], "--limit"),
    (["list", "widgets"], "widgets"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_or_contradictory_flags_exit_2_naming_the_flag(capsys, argv, needle):
    assert needle in _usage_error(capsys, argv)


def test_help_lists_important_flags_first(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "--help"])
    assert exc.value.code == 0
    helptext = capsys.readouterr().out
    order = [helptext.index(f"\n  {f}") for f in ("--scheme", "--format", "--iters", "--bits", "--layer_config",
                                                   "--lr", "--device_map", "--avg_bits", "--eval")]
    assert order == sorted(order)


def test_relaxed_json_and_group_size(tmp_path):
    assert relaxed_json("{k_proj:{bits:8}, lm_head:{bits:16, data_type:fp}}", "--x") == \
        {"k_proj": {"bits": 8}, "lm_head": {"bits": 16, "data_type": "fp"}}
    assert relaxed_json('{".*mlp.*": {"bits": 3, "sym": false}}', "--x") == {".*mlp.*": {"bits": 3, "sym": False}}
    path = tmp_path / "lc.json"
    path.write_text('{"q_proj": {"bits": 2}}')
    assert relaxed_json(str(path), "--x") == {"q_proj": {"bits": 2}}
    with pytest.raises(UsageError, match="--x"):
        relaxed_json("{a:", "--x")
    assert group_size("64") == 64 and group_size("128,128") == (128, 128)


def _args(argv):
    args, _ = build_parser().parse_known_args(["quantize", "m", *argv])
    return args


def test_gguf_format_picks_its_preset():
    s = build_scheme(_args(["--format", "auto_round,gguf:q4_k_m"]), ["auto_round", "gguf:q4_k_m"])
    assert s.gguf == "q4_k_m"


def test_scheme_overrides():
    s = build_scheme(_args(["--scheme", "W2A16", "--group_size", "32", "--asym"]), ["auto_round"])
    assert (s.bits, s.group_size, s.sym) == (2, 32, False)


def test_route_algorithm_sets_iters():
    args = _args(["--algorithm", "rtn"])
    route_algorithm(args)
    assert (args.iters, args.disable_opt_rtn) == (0, True)
    args = _args(["--algorithm", "opt_rtn"])
    route_algorithm(args)
    assert (args.iters, args.disable_opt_rtn, args.awq) == (0, False, None)
    args = _args(["--algorithm", "awq"])
    route_algorithm(args)
    assert (args.iters, args.disable_opt_rtn, args.awq) == (0, True, True)
    args = _args(["--algorithm", "awq,auto_round", "--iters", "3"])
    route_algorithm(args)
    assert (args.iters, args.disable_opt_rtn, args.awq) == (3, None, True)


def test_disable_opt_rtn_with_iters_starts_signround_from_plain_rtn():
    from ar_algos.config import make_config

    args = _args(["--iters", "10", "--disable_opt_rtn"])
    check_flags(args, ["auto_round"], {"iters", "disable_opt_rtn"})
    kw = autoround_kwargs(args, parse_scheme("W4A16"), lambda model, scheme=None, **knobs: None,
                          {"iters", "disable_opt_rtn"})
    cfg = make_config(**{k: v for k, v in kw.items() if k != "scheme"})
    assert (cfg.algorithm, cfg.start_from_opt_rtn) == ("signround", False)


def test_autoround_kwargs_pass_set_flags_only():
    def api(model, tokenizer=None, scheme=None, layer_config=None, ignore_layers=None, quant_lm_head=False,
            dataset=None, device=None, **knobs):
        """A stand-in with AutoRound's named parameters."""

    args = _args(["--iters", "3", "--nsamples", "8", "--layer_config", "{k_proj:{bits:8}}", "--ignore_layers",
                  "mlp.down", "--adam", "--device_map", "0", "--dataset", "wiki"])
    kw = autoround_kwargs(args, parse_scheme("W4A16"), api, {"iters", "nsamples", "enable_adam"})
    assert kw == {"scheme": parse_scheme("W4A16"), "layer_config": {"k_proj": {"bits": 8}},
                  "ignore_layers": "mlp.down", "iters": 3, "nsamples": 8, "enable_adam": True, "dataset": "wiki",
                  "device": 0}
    with pytest.raises(UsageError, match="--seed is not available yet"):
        autoround_kwargs(_args(["--seed", "1"]), parse_scheme("W4A16"), api, {"iters"})


@pytest.mark.parametrize("model, scheme, name", [
    ("smollm2-135m", "W4A16", "smollm2-135m-w4g128"),
    ("/x/y/Qwen-0.5B/", "W2A16G32", "Qwen-0.5B-w2g32"),
    ("m", "MXFP4", "m-mxfp-w4g32"),
    ("m", "INT8_W8A8", "m-w8a8"),
    ("m", "FP8_BLOCK", "m-fp-w8g128x128"),
    ("m", "GGUF:Q4_K_M", "m-gguf"),
])
def test_output_name(model, scheme, name):
    assert output_name(model, parse_scheme(scheme)) == name
