"""Triton kernels of the register merge (the math is in `diffvm.interp.kernels.merge`).

Notation (docs/NOTATION.md): B batch, K candidates, D value elements. One program per (example,
block of BLOCK_D elements) reads the K candidates and r_prev once and writes r (forward), or
∂ℓ/∂y and ∂ℓ/∂r_prev (backward); ∂ℓ/∂w sums over D, across the programs of one example, so each
program writes its partial sums to a (B, D / BLOCK_D, K) buffer that PyTorch adds up.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["merge_backward", "merge_forward"]

BLOCK_D = 1024  # value elements per program. Not tuned on a GPU yet.
NUM_WARPS = 4


@triton.jit
def _merge_forward_kernel(
    weights_ptr, candidates_ptr, previous_ptr, out_ptr,  # w (B, K), y (K, B, D), r_prev (B, D), r (B, D)
    B, K, D,
    BLOCK_D: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    ok = cols < D
    previous = tl.load(previous_ptr + batch * D + cols, mask=ok, other=0.0)
    total = tl.zeros((BLOCK_D,), dtype=previous.dtype)  # Σ_k w_k·y_k
    spent = tl.full((), 0.0, previous.dtype)  # Σ_k w_k
    for k in range(K):
        w = tl.load(weights_ptr + batch * K + k)
        total += w * tl.load(candidates_ptr + (k * B + batch) * D + cols, mask=ok, other=0.0)
        spent += w
    tl.store(out_ptr + batch * D + cols, total + (1 - spent) * previous, mask=ok)


@triton.jit
def _merge_backward_kernel(
    grad_ptr, weights_ptr, candidates_ptr, previous_ptr,  # ∂ℓ/∂r (B, D) and the op's inputs
    grad_candidates_ptr, grad_previous_ptr, grad_weights_part_ptr,  # (K, B, D), (B, D), (B, ND, K)
    B, K, D, ND,
    BLOCK_D: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    cols = block * BLOCK_D + tl.arange(0, BLOCK_D)
    ok = cols < D
    grad = tl.load(grad_ptr + batch * D + cols, mask=ok, other=0.0)
    previous = tl.load(previous_ptr + batch * D + cols, mask=ok, other=0.0)
    against_previous = tl.sum(grad * previous, 0)
    spent = tl.full((), 0.0, grad.dtype)
    for k in range(K):
        w = tl.load(weights_ptr + batch * K + k)
        at = (k * B + batch) * D + cols
        tl.store(grad_candidates_ptr + at, w * grad, mask=ok)
        candidate = tl.load(candidates_ptr + at, mask=ok, other=0.0)
        tl.store(grad_weights_part_ptr + (batch * ND + block) * K + k, tl.sum(grad * candidate, 0) - against_previous)
        spent += w
    tl.store(grad_previous_ptr + batch * D + cols, (1 - spent) * grad, mask=ok)


def _blocks(size: int) -> int:
    return min(BLOCK_D, triton.next_power_of_2(size))


def merge_forward(weights: torch.Tensor, candidates: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """r (B, D) from w (B, K), y (K, B, D) and r_prev (B, D)."""
    weights, candidates, previous = weights.contiguous(), candidates.contiguous(), previous.contiguous()
    (batch, size), k = previous.shape, weights.shape[1]
    block = _blocks(size)
    out = empty(batch, size, like=previous)
    with launch_device(previous):
        _merge_forward_kernel[(batch, triton.cdiv(size, block))](
            weights, candidates, previous, out, batch, k, size, BLOCK_D=block, num_warps=NUM_WARPS)
    return out


def merge_backward(grad: torch.Tensor, weights: torch.Tensor, candidates: torch.Tensor,
                   previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂ℓ/∂w (B, K), ∂ℓ/∂y (K, B, D), ∂ℓ/∂r_prev (B, D)."""
    grad, weights, candidates, previous = (x.contiguous() for x in (grad, weights, candidates, previous))
    (batch, size), k = previous.shape, weights.shape[1]
    block = _blocks(size)
    blocks = triton.cdiv(size, block)
    grad_candidates, grad_previous = empty(k, batch, size, like=previous), empty(batch, size, like=previous)
    grad_weights = empty(batch, blocks, k, like=previous)
    with launch_device(previous):
        _merge_backward_kernel[(batch, blocks)](
            grad, weights, candidates, previous, grad_candidates, grad_previous, grad_weights, batch, k, size, blocks,
            BLOCK_D=block, num_warps=NUM_WARPS)
    return grad_weights.sum(1), grad_candidates, grad_previous
