"""Triton kernels for GPTQ-order int 2/4/8-bit weights with group scales and packed zero points.

    gptq_gemm:  fused dequantize-GEMM, tiles of (BLOCK_M, BLOCK_N), loop over K (prefill, M >= 16)
    gptq_gemv:  split-K GEMV for decode (M < 16): each program reduces one K slice for a BLOCK_N column tile,
                partial sums [SPLIT_K, M, N] are summed afterwards (deterministic, no atomics)

Weights are dequantized in float32 as scale * (q - zero); the product runs in the input dtype (fp16/bf16) or
float32 (IEEE, not TF32) with float32 accumulation. Under TRITON_INTERPRET=1, bf16 tiles are upcast before tl.dot (the interpreter
multiplies raw bf16 bits otherwise).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _dequant_tile(qweight_ptr, scales_ptr, qzeros_ptr, offs_k, offs_n, mask_k, mask_n, N, group_size,
                  BITS: tl.constexpr, ZERO_PLUS_ONE: tl.constexpr):
    """Float32 [len(offs_k), len(offs_n)] tile of scale * (q - zero)."""
    per: tl.constexpr = 32 // BITS
    maskq: tl.constexpr = (1 << BITS) - 1
    mask = mask_k[:, None] & mask_n[None, :]
    packed = tl.load(qweight_ptr + (offs_k // per)[:, None] * N + offs_n[None, :], mask=mask, other=0)
    q = (packed >> ((offs_k % per) * BITS)[:, None]) & maskq
    g = offs_k // group_size
    scale = tl.load(scales_ptr + g[:, None] * N + offs_n[None, :], mask=mask, other=0.0).to(tl.float32)
    zcols = (N + per - 1) // per
    zpacked = tl.load(qzeros_ptr + g[:, None] * zcols + (offs_n // per)[None, :], mask=mask, other=0)
    z = (zpacked >> ((offs_n % per) * BITS)[None, :]) & maskq
    if ZERO_PLUS_ONE:
        z = (z + 1) & maskq
    return scale * (q - z).to(tl.float32)


@triton.jit
def gptq_gemm_kernel(a_ptr, qweight_ptr, scales_ptr, qzeros_ptr, c_ptr, M, N, K, group_size,
                     stride_am, stride_cm, BITS: tl.constexpr, ZERO_PLUS_ONE: tl.constexpr,
                     DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """C[M, N] = A[M, K] @ dequant(W)[K, N], one (BLOCK_M, BLOCK_N) tile per program."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(a_ptr + offs_m[:, None] * stride_am + offs_k[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = _dequant_tile(qweight_ptr, scales_ptr, qzeros_ptr, offs_k, offs_n, mask_k, mask_n, N, group_size,
                          BITS, ZERO_PLUS_ONE)
        if DOT_FP32:
            acc += tl.dot(a.to(tl.float32), w, input_precision="ieee")
        else:
            acc += tl.dot(a, w.to(a.dtype))
    tl.store(c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :], acc, mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def gptq_gemv_kernel(a_ptr, qweight_ptr, scales_ptr, qzeros_ptr, partial_ptr, M, N, K, group_size, k_per_split,
                     stride_am, BITS: tl.constexpr, ZERO_PLUS_ONE: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """partial[split, M, N] = A[:, slice] @ dequant(W)[slice, :] for the K slice of program axis 1."""
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = split * k_per_split
    for k0 in range(k_start, k_start + k_per_split, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(a_ptr + offs_m[:, None] * stride_am + offs_k[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0).to(tl.float32)
        w = _dequant_tile(qweight_ptr, scales_ptr, qzeros_ptr, offs_k, offs_n, mask_k, mask_n, N, group_size,
                          BITS, ZERO_PLUS_ONE)
        acc += tl.sum(a[:, :, None] * w[None, :, :], axis=1)
    base = partial_ptr + split * M * N
    tl.store(base + offs_m[:, None] * N + offs_n[None, :], acc, mask=mask_m[:, None] & mask_n[None, :])


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def gptq_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, qzeros: torch.Tensor, bits: int,
                group_size: int, zero_plus_one: bool, gemv_below: int = 16) -> torch.Tensor:
    """x [M, K] @ dequant(W) -> [M, N] in x.dtype; GEMM kernel for M >= gemv_below, split-K GEMV otherwise."""
    x, qweight, scales, qzeros = x.contiguous(), qweight.contiguous(), scales.contiguous(), qzeros.contiguous()
    m, k = x.shape
    n = scales.shape[1]
    if m >= gemv_below:
        out = torch.empty(m, n, device=x.device, dtype=torch.float32)
        block_m = 64 if m >= 64 else 32 if m >= 32 else 16
        block_k = 64 if k % 64 == 0 else 32
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, 64))
        gptq_gemm_kernel[grid](x, qweight, scales, qzeros, out, m, n, k, group_size, x.stride(0), out.stride(0),
                               BITS=bits, ZERO_PLUS_ONE=zero_plus_one,
                               DOT_FP32=x.dtype == torch.float32 or (_interpreting() and x.dtype == torch.bfloat16),
                               BLOCK_M=block_m, BLOCK_N=64, BLOCK_K=block_k)
        return out.to(x.dtype)
    block_m = max(2, triton.next_power_of_2(m))
    block_k = 32 if block_m <= 4 else 16  # keeps the [BLOCK_M, BLOCK_K, BLOCK_N] product tile small
    split_k = max(1, min(k // 256, 16))
    k_per_split = triton.cdiv(triton.cdiv(k, split_k), block_k) * block_k
    split_k = triton.cdiv(k, k_per_split)
    partial = torch.empty(split_k, m, n, device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(n, 64), split_k)
    gptq_gemv_kernel[grid](x, qweight, scales, qzeros, partial, m, n, k, group_size, k_per_split, x.stride(0),
                           BITS=bits, ZERO_PLUS_ONE=zero_plus_one, BLOCK_M=block_m,
                           BLOCK_N=64, BLOCK_K=block_k)
    return partial.sum(0).to(x.dtype)
