"""Run by test_algos_distributed.py under torchrun (or alone as the one-process reference): quantize the tiny model
with each case given on the command line and let rank 0 save the records to <out>/<case>.pt.

    python -m torch.distributed.run --standalone --nproc-per-node 2 distributed_worker.py OUT signround opt-rtn
    cases: signround | opt-rtn | awq | autoscheme (opt-RTN after a 3-bit AutoScheme search) |
           model-free:<model_dir>:<output_dir> (W4G32, shards spread over the ranks) |
           die:<work_dir> (rank 1 exits at block 1 of a checkpointed SignRound run; give it last)
"""

import os
import sys
from pathlib import Path

import torch

from ar_algos import AutoRound
from ar_algos.autoscheme import AutoScheme
from ar_algos.distributed import init_from_torchrun, is_main, rank
from ar_algos.model_free import quantize_model_free
from ar_algos.records import record_state
from ar_algos.tiny import random_samples, tiny_model
from ar_core.registry import FORMATS

KNOBS = {"signround": dict(iters=4), "opt-rtn": dict(iters=0), "awq": dict(algorithm="awq"),
         "autoscheme": dict(iters=0)}


def make(case: str, work_dir=None) -> AutoRound:
    """The tiny-model run of `case` (the same on every rank and in the one-process reference)."""
    scheme = AutoScheme(3.0, "W2A16G32,W4A16G32,W8A16G32", verbose=False) if case == "autoscheme" else "W3G32"
    data = dict(samples=random_samples(6, 8)) if case == "autoscheme" else dict(dataset=random_samples(6, 8))
    # amp off: bf16 autocast rounds partial sums, so ranks and one process would differ by more than summation order
    args = dict(scheme=scheme, **data, nsamples=6, seqlen=8, batch_size=4, verbose=False, amp=False,
                quant_lm_head=case != "awq", work_dir=work_dir, **KNOBS[case])
    return AutoRound(tiny_model("llama", num_hidden_layers=3), **args)


def die_at(block: int) -> None:
    """Make rank 1 exit (as if killed) when the driver reaches `block`."""
    import ar_algos.driver as driver

    real = driver._quantize_block

    def dying(unit, index, *args):
        if index == block and rank() == 1:
            os._exit(3)
        return real(unit, index, *args)

    driver._quantize_block = dying


def register_auto_round() -> None:
    """The auto_round writer in FORMATS (ar-export may not be installed as a plugin in the test environment)."""
    if not FORMATS.is_available("auto_round"):
        import ar_export

        FORMATS.register("auto_round", ar_export.get_writer("auto_round"))


def main(out: Path, cases: list[str]) -> None:
    """Quantize each case; rank 0 saves the records."""
    init_from_torchrun()
    torch.set_num_threads(1)
    for case in cases:
        kind, _, work_dir = case.partition(":")
        if kind == "model-free":
            register_auto_round()
            quantize_model_free(*work_dir.split(":"), scheme="W4G32", max_shard_size="150KB")
            continue
        if kind == "die":
            die_at(1)
            kind = "signround"
        _, records = make(kind, work_dir or None).quantize()
        if is_main():
            torch.save({n: record_state(r) for n, r in records.items()}, out / f"{kind}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
