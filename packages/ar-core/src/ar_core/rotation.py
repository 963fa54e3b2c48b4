"""Hadamard rotations shared by the quantizers (ar-algos) and the loaders (ar-kernels).

Orthonormal Hadamard matrices of any order K * 2^m whose K has a Paley construction: Sylvester doubling gives every
power of two, Paley I (prime p = 3 mod 4) order p + 1 (12, 20, 44, 60, ...), Paley II (prime q = 1 mod 4) order
2(q + 1) (28, 36, 76, ...); a Kronecker product combines them, so e.g. 576 = 36 * 16 (SmolLM2's hidden size) and
4864 = 76 * 64 are covered. Online rotations: a layer whose weight absorbed W @ R must see x @ R at inference, so a
small module run from a forward pre-hook rotates its input; `restore_rotation` rebuilds them from the
`rotation_config` saved with a checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import ArError, field_error


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _jacobsthal(p: int) -> torch.Tensor:
    """Q[i, j] = quadratic character of (j - i) mod p (0 on the diagonal)."""
    squares = {(x * x) % p for x in range(1, p)}
    chi = torch.tensor([0.0] + [1.0 if d in squares else -1.0 for d in range(1, p)], dtype=torch.float64)
    idx = (torch.arange(p)[None, :] - torch.arange(p)[:, None]) % p
    return chi[idx]


def _paley(order: int) -> torch.Tensor | None:
    """A ±1 Hadamard matrix of `order` from a Paley construction, or None when neither applies."""
    if order % 4:
        return None
    p = order - 1
    if _is_prime(p) and p % 4 == 3:
        s = torch.zeros(order, order, dtype=torch.float64)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1.0, -1.0, _jacobsthal(p)
        return s + torch.eye(order, dtype=torch.float64)
    q = order // 2 - 1
    if _is_prime(q) and q % 4 == 1:
        c = torch.zeros(q + 1, q + 1, dtype=torch.float64)
        c[0, 1:], c[1:, 0], c[1:, 1:] = 1.0, 1.0, _jacobsthal(q)
        a = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        b = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
        return torch.kron(c, a) + torch.kron(torch.eye(q + 1, dtype=torch.float64), b)
    return None


def _sylvester(n: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hadamard_pm1(n: int) -> torch.Tensor | None:
    """A ±1 Hadamard matrix of order `n` (float64), or None when `n` is not K * 2^m with a Paley or trivial K."""
    m = 0
    while n % (2 ** (m + 1)) == 0:
        m += 1
    for j in range(m, -1, -1):  # the largest power of two first: the smallest base K
        k = n // 2 ** j
        base = torch.ones(1, 1, dtype=torch.float64) if k == 1 else _paley(k)
        if base is not None:
            return torch.kron(base, _sylvester(2 ** j))
    return None


def has_hadamard(n: int) -> bool:
    """Whether `hadamard_matrix(n)` works without random=True."""
    return isinstance(n, int) and n >= 1 and hadamard_pm1(n) is not None


def hadamard_matrix(n: int, random: bool = False, seed: int = 0) -> torch.Tensor:
    """An orthonormal [n, n] float64 rotation: H / sqrt(n), times diag(±1) from `seed` when `random`.

    With `random` and no Hadamard of order n, a seeded random orthogonal matrix (QR of a Gaussian) is returned;
    without `random` such an n raises ArError.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise field_error(ArError, "rotation size", n, "an int >= 1")
    h = hadamard_pm1(n)
    g = torch.Generator().manual_seed(seed)
    if h is None:
        if not random:
            raise field_error(ArError, "rotation size", n, "K * 2^m with a known Hadamard order K (1, 12, 20, 28, 36, "
                              "44, 60, 76, ...); pass random=True for a random orthogonal rotation of any size")
        qm, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        return qm * torch.sign(torch.diagonal(r))[None, :]
    h = h / n ** 0.5
    if random:
        signs = torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2 - 1
        h = signs[:, None] * h
    return h


class OnlineHadamard(nn.Module):
    """Multiplies the last dimension, in blocks of the matrix's order, by an orthonormal matrix (not saved in the
    state dict: it is rebuilt from its size, random flag and seed)."""

    def __init__(self, size: int, random: bool = False, seed: int = 0):
        super().__init__()
        self.size, self.random, self.seed = size, random, seed
        self.register_buffer("matrix", hadamard_matrix(size, random, seed).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = x.reshape(*shape[:-1], shape[-1] // self.size, self.size).to(self.matrix.dtype) @ self.matrix
        return y.reshape(shape).to(x.dtype)


def _rotate_input(module: nn.Module, args: tuple) -> tuple:
    return (module.online_rotation(args[0]), *args[1:])


def attach_online(layer: nn.Module, size: int, random: bool = False, seed: int = 0) -> OnlineHadamard:
    """Make `layer` rotate its input by OnlineHadamard(size, random, seed) before its own forward."""
    if hasattr(layer, "online_rotation"):
        raise ArError(f"{type(layer).__name__} already has an online rotation (rotate a model only once)")
    tensors = [*layer.parameters(), *layer.buffers()]
    rot = OnlineHadamard(size, random, seed).to(tensors[0].device if tensors else "cpu")
    layer.online_rotation = rot
    layer.register_forward_pre_hook(_rotate_input)
    return rot


def restore_rotation(model: nn.Module, rotation_config: dict[str, Any]) -> int:
    """Re-attach the online rotations described by `rotation_config["online"]` (for loaders of rotated
    checkpoints: call it after the quantized layers are in place); returns how many layers got one."""
    count = 0
    for entry in rotation_config.get("online", []):
        for name in entry["layers"]:
            attach_online(model.get_submodule(name), entry["size"], entry["random"], entry["seed"])
            count += 1
    return count
