"""Triton kernels of ACT's ponder step (the math is in `diffvm.interp.kernels.act`).

Notation (docs/NOTATION.md): B batch, D elements of one leaf. The (B,) bookkeeping (h̄, the
halting mask, p^n, c', R') is one program per block of examples; each leaf is then one launch of
one program per (example, block of BLOCK_D elements), which reads p^n and the running flag of its
example. In the backward ∂ℓ/∂p sums over every leaf's elements, across programs: each program
writes its partial sum to a (B, D / BLOCK_D) buffer that PyTorch adds up, before the (B,) kernel
turns ∂ℓ/∂p, ∂ℓ/∂c' and ∂ℓ/∂R' into ∂ℓ/∂(h^n, c, R).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["act_backward", "act_forward"]

BLOCK_B = 256  # examples per program of the (B,) kernels. Not tuned on a GPU yet.
BLOCK_D = 1024  # leaf elements per program. Not tuned on a GPU yet.
NUM_WARPS = 4


@triton.jit
def _halting(halt_ptr, cum_ptr, running_ptr, rows, ok, threshold_ptr, LAST: tl.constexpr):
    """h̄, running, the halting mask and p^n of the examples `rows`."""
    threshold = tl.load(threshold_ptr)
    running = tl.load(running_ptr + rows, mask=ok, other=0) != 0
    cum = tl.load(cum_ptr + rows, mask=ok, other=0.0)
    halt = tl.where(running, tl.load(halt_ptr + rows, mask=ok, other=0.0), 0.0)  # select: h^n may be NaN
    if LAST:
        halting = running
    else:
        halting = running & (cum + halt >= threshold)
    return halt, cum, running, halting, tl.where(halting, 1.0 - cum, halt)


@triton.jit
def _act_halting_kernel(
    halt_ptr, cum_ptr, rem_ptr, running_ptr,  # h^n, c, R (B,), running (B,) bool
    p_ptr, halting_ptr, new_cum_ptr, new_rem_ptr,  # p^n, halting (bool), c', R' (B,)
    B, threshold_ptr,  # 1 − ε, in the inputs' dtype as PyTorch compares it
    LAST: tl.constexpr, BLOCK_B: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = rows < B
    halt, cum, _, halting, p = _halting(halt_ptr, cum_ptr, running_ptr, rows, ok, threshold_ptr, LAST)
    tl.store(p_ptr + rows, p, mask=ok)
    tl.store(halting_ptr + rows, halting, mask=ok)
    tl.store(new_cum_ptr + rows, cum + halt, mask=ok)
    tl.store(new_rem_ptr + rows, tl.where(halting, 1.0 - cum, tl.load(rem_ptr + rows, mask=ok, other=0.0)), mask=ok)


@triton.jit
def _act_leaf_kernel(
    p_ptr, running_ptr, total_ptr, value_ptr,  # p^n (B,), running (B,) bool, y, y^n (B, D)
    out_ptr,  # y' (B, D)
    D,
    BLOCK_D: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    ok = cols < D
    running = tl.load(running_ptr + batch) != 0
    value = tl.load(value_ptr + batch * D + cols, mask=ok, other=0.0)
    total = tl.load(total_ptr + batch * D + cols, mask=ok, other=0.0)
    tl.store(out_ptr + batch * D + cols, total + tl.load(p_ptr + batch) * tl.where(running, value, 0.0), mask=ok)


@triton.jit
def _act_leaf_backward_kernel(
    grad_total_ptr, p_ptr, running_ptr, value_ptr,  # ∂ℓ/∂y' (B, D), p^n (B,), running (B,), y^n (B, D)
    grad_value_ptr, grad_p_part_ptr,  # ∂ℓ/∂y^n (B, D), partial sums of ∂ℓ/∂p (B, D / BLOCK_D)
    D, ND,
    BLOCK_D: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    cols = block * BLOCK_D + tl.arange(0, BLOCK_D)
    ok = cols < D
    running = tl.load(running_ptr + batch) != 0
    grad = tl.load(grad_total_ptr + batch * D + cols, mask=ok, other=0.0)
    value = tl.where(running, tl.load(value_ptr + batch * D + cols, mask=ok, other=0.0), 0.0)  # select: NaN stays out
    tl.store(grad_value_ptr + batch * D + cols, tl.where(running, tl.load(p_ptr + batch) * grad, 0.0), mask=ok)
    tl.store(grad_p_part_ptr + batch * ND + block, tl.sum(grad * value, 0))


@triton.jit
def _act_halting_backward_kernel(
    grad_p_ptr, grad_cum_ptr, grad_rem_ptr,  # ∂ℓ/∂p (every leaf's share added), ∂ℓ/∂c', ∂ℓ/∂R' (B,)
    halt_ptr, cum_ptr, running_ptr,  # the op's inputs
    grad_halt_out_ptr, grad_cum_out_ptr, grad_rem_out_ptr,  # ∂ℓ/∂h^n, ∂ℓ/∂c, ∂ℓ/∂R (B,)
    B, threshold_ptr,  # 1 − ε, in the inputs' dtype as PyTorch compares it
    LAST: tl.constexpr, BLOCK_B: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = rows < B
    _, _, running, halting, _ = _halting(halt_ptr, cum_ptr, running_ptr, rows, ok, threshold_ptr, LAST)
    grad_p = tl.load(grad_p_ptr + rows, mask=ok, other=0.0)
    grad_cum = tl.load(grad_cum_ptr + rows, mask=ok, other=0.0)
    grad_rem = tl.load(grad_rem_ptr + rows, mask=ok, other=0.0)
    tl.store(grad_halt_out_ptr + rows, tl.where(running & ~halting, grad_p, 0.0) + tl.where(running, grad_cum, 0.0),
             mask=ok)
    tl.store(grad_cum_out_ptr + rows, grad_cum - tl.where(halting, grad_p + grad_rem, 0.0), mask=ok)
    tl.store(grad_rem_out_ptr + rows, tl.where(halting, 0.0, grad_rem), mask=ok)


def _threshold(threshold: float, like: torch.Tensor) -> torch.Tensor:
    """1 − ε as a one-element tensor of `like`'s dtype: a Python float argument would reach the kernel
    as float32, and PyTorch compares a float64 sum with the float64 threshold."""
    return torch.full((1,), threshold, dtype=like.dtype, device=like.device)


def _flat(y: torch.Tensor) -> torch.Tensor:
    return y.contiguous().reshape(y.shape[0], -1)  # (B, D)


def act_forward(halt: torch.Tensor, cumulative: torch.Tensor, remainder: torch.Tensor, running: torch.Tensor,
                totals: list[torch.Tensor], values: list[torch.Tensor], last: bool, threshold: float):
    """p^n, halting, c', R' (B,) and every leaf's y'."""
    halt, cumulative, remainder, running = (x.contiguous() for x in (halt, cumulative, remainder, running))
    batch = halt.shape[0]
    p, new_cum, new_rem = (empty(batch, like=halt) for _ in range(3))
    halting = torch.empty(batch, dtype=torch.bool, device=halt.device)
    new_totals = []
    with launch_device(halt):
        _act_halting_kernel[(triton.cdiv(batch, BLOCK_B),)](
            halt, cumulative, remainder, running, p, halting, new_cum, new_rem, batch, _threshold(threshold, halt),
            LAST=last, BLOCK_B=BLOCK_B, num_warps=NUM_WARPS)
        for total, value in zip(totals, values):
            size = value[0].numel()
            out = empty(batch, size, like=halt)
            if size:
                block = min(BLOCK_D, triton.next_power_of_2(size))
                _act_leaf_kernel[(batch, triton.cdiv(size, block))](
                    p, running, _flat(total), _flat(value), out, size, BLOCK_D=block, num_warps=NUM_WARPS)
            new_totals.append(out.reshape(value.shape))
    return p, halting, new_cum, new_rem, new_totals


def act_backward(grad_weight: torch.Tensor, grad_cumulative: torch.Tensor, grad_remainder: torch.Tensor,
                 grad_totals: list[torch.Tensor], halt: torch.Tensor, cumulative: torch.Tensor,
                 running: torch.Tensor, values: list[torch.Tensor], last: bool, threshold: float):
    """∂ℓ/∂h^n, ∂ℓ/∂c, ∂ℓ/∂R (B,) and every leaf's ∂ℓ/∂y^n."""
    tensors = (grad_weight, grad_cumulative, grad_remainder, halt, cumulative, running)
    grad_weight, grad_cumulative, grad_remainder, halt, cumulative, running = (x.contiguous() for x in tensors)
    batch = halt.shape[0]
    # p^n again, from the forward's (B,) kernel: the leaves' backward needs it before ∂ℓ/∂p exists
    p, *_ = act_forward(halt, cumulative, cumulative, running, [], [], last, threshold)
    grad_p, grad_values = grad_weight, []
    with launch_device(halt):
        for grad, value in zip(grad_totals, values):
            size = value[0].numel()
            grad_value = empty(batch, size, like=halt)
            if size:
                block = min(BLOCK_D, triton.next_power_of_2(size))
                blocks = triton.cdiv(size, block)
                part = empty(batch, blocks, like=halt)
                _act_leaf_backward_kernel[(batch, blocks)](
                    _flat(grad), p, running, _flat(value), grad_value, part, size, blocks, BLOCK_D=block,
                    num_warps=NUM_WARPS)
                grad_p = grad_p + part.sum(1)
            grad_values.append(grad_value.reshape(value.shape))
        grads = [empty(batch, like=halt) for _ in range(3)]
        _act_halting_backward_kernel[(triton.cdiv(batch, BLOCK_B),)](
            grad_p, grad_cumulative, grad_remainder, halt, cumulative, running, *grads, batch,
            _threshold(threshold, halt), LAST=last, BLOCK_B=BLOCK_B, num_warps=NUM_WARPS)
    return (*grads, grad_values)
