"""ar_algos.distributed without a process group (every helper is the one-process identity), Shard's index
mapping, and the error a failed collective becomes. The multi-rank runs are in test_algos_distributed.py."""

import pytest
import torch

from ar_algos import distributed as d
from ar_core.errors import ArError


def test_without_a_group_everything_is_one_process(tmp_path):
    assert not d.active() and d.rank() == 0 and d.world_size() == 1 and d.is_main()
    assert d.local_slice(7) == slice(0, 7) and d.local_rows([1, 2, 3]) == [1, 2, 3]
    stats = {"a": torch.ones(3)}
    assert d.reduce_stats(stats, "sum") is stats and d.sum_float(2.5) == 2.5
    assert d.make_shard(torch.ones(2, 3), 2) is None
    t = torch.arange(6.0).reshape(3, 2)
    assert d.gather_rows(t) is t and d.broadcast("x") == "x" and d.on_main(lambda: 5) == 5
    assert d.spread_tasks([1, 2, 3], lambda tasks: [x * 2 for x in tasks]) == [2, 4, 6]
    with d.shared_tempdir(".parts-", tmp_path) as parts:
        assert parts.is_dir()
    assert not parts.exists()


def test_global_mse_equals_the_masked_mean():
    pred, ref = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    expected = ((pred - ref).pow(2) * mask[..., None]).sum() / (mask.sum() * 4)
    assert d.global_mse(pred, ref, mask) == pytest.approx(float(expected), rel=1e-6)


def test_shard_maps_global_indices_to_its_rows():
    mask = torch.tensor([[1.0, 1], [1, 0], [0, 0], [1, 1], [1, 1]])
    shard = d.Shard(lo=2, hi=5, total=5, mask=mask)
    assert shard.local(torch.tensor([4, 0, 2, 1])).tolist() == [2, 0]
    assert shard.local(torch.tensor([0, 1])).numel() == 0
    assert shard.tokens(torch.tensor([0, 1, 3])) == 5.0


def test_a_failed_collective_says_how_to_resume():
    def all_reduce(*_):
        raise RuntimeError("Connection reset by peer\nmore")

    with pytest.raises(ArError, match=r"another rank stopped.*all_reduce.*Connection reset by peer.*resume"):
        d.collective(all_reduce, torch.ones(1))


def test_too_few_samples_for_the_ranks_is_refused(monkeypatch):
    monkeypatch.setattr(d, "active", lambda: True)
    monkeypatch.setattr(d, "world_size", lambda: 4)
    with pytest.raises(ArError, match="nsamples=3 is fewer than the 4 ranks"):
        d.check_samples(3)
