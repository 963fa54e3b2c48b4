"""Fixtures shared by ar-algos tests: interrupting the block driver, and comparing quantization records."""

from __future__ import annotations

import pytest
import torch

import ar_algos.driver as driver


@pytest.fixture
def die_at_block(monkeypatch):
    """`die_at_block(i)` makes the driver raise RuntimeError("killed at block i") the first time it reaches block
    (or block group) `i`; later calls run normally. Returns the list of block indices the driver is asked for, in order,
    so a test can see where a resumed run started."""

    def arm(at: int) -> list[int]:
        real = driver._quantize_block
        seen: list[int] = []

        def dying(block, index, *args):
            seen.append(index)
            if index == at and seen.count(at) == 1:
                raise RuntimeError(f"killed at block {at}")
            return real(block, index, *args)

        monkeypatch.setattr(driver, "_quantize_block", dying)
        return seen

    return arm


@pytest.fixture
def assert_same_records():
    """`assert_same_records(a, b)` checks that two {name: QuantizedTensor} dicts hold bitwise-equal codes, scales and
    zero points."""

    def check(a: dict, b: dict) -> None:
        assert a.keys() == b.keys()
        for n in a:
            for field in ("codes", "scale", "zero"):
                assert torch.equal(getattr(a[n], field), getattr(b[n], field)), (n, field)

    return check
