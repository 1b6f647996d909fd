"""Triton kernels of the neural stack/queue step (the math is in `diffvm.interp.kernels.stack`).

Notation (docs/NOTATION.md): B batch, C capacity, W word width. One program per example holds
all C strengths in one block (C ≤ `MAX_CAPACITY`) and walks the values in (C, BLOCK_W) tiles.
The scans β are `tl.cumsum` less the element itself: with strengths that are exact small
integers (hard pushes and pops) every partial sum is exact, as in the reference's shifted cumsum;
with soft strengths the two differ by rounding only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["MAX_CAPACITY", "strength_backward", "strength_forward"]

# The most rows one program holds; a larger capacity would need a scan across programs.
MAX_CAPACITY = 8192
TILE_ELEMENTS = 8192  # elements of the (C, BLOCK_W) value tile. Not tuned on a GPU yet.
NUM_WARPS = 4


def _blocks(capacity: int, width: int) -> tuple[int, int]:
    if capacity > MAX_CAPACITY:
        raise ValueError(f"strength_step: the Triton kernel holds the strengths in one block, C ≤ {MAX_CAPACITY}; "
                         f"got C = {capacity}")
    block_c = triton.next_power_of_2(capacity)
    return block_c, max(1, min(triton.next_power_of_2(width), TILE_ELEMENTS // block_c))


@triton.jit
def _beyond(x, TOP: tl.constexpr):
    """β(x): Σ_{j>i} x[j] (TOP) or Σ_{j<i} x[j]."""
    return tl.cumsum(x, 0, reverse=TOP) - x


@triton.jit
def _forward_parts(s_ptr, u_ptr, d_ptr, batch, rows, row_ok, C, row, TOP: tl.constexpr):
    s = tl.load(s_ptr + batch * C + rows, mask=row_ok, other=0.0)  # (BC,)
    u = tl.load(u_ptr + batch)
    d = tl.load(d_ptr + batch)
    left = tl.maximum(u - _beyond(s, TOP), 0.0)  # max(0, u − β(s))
    popped = tl.maximum(s - left, 0.0)  # s'
    new = tl.where(row_ok, tl.where(rows == row, d, popped), 0.0)  # s_t
    room = tl.maximum(1 - _beyond(new, TOP), 0.0)
    weights = tl.where(row_ok, tl.where(new <= room, new, room), 0.0)  # min(s_t, room), left on ties
    return left, popped, new, room, weights


@triton.jit
def _strength_forward_kernel(
    s_ptr, values_ptr, u_ptr, d_ptr,  # s_{t−1} (B, C), V_t (B, C, W), u (B,), d (B,)
    new_ptr, read_ptr,  # s_t (B, C), r (B, W)
    C, W, row,
    TOP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_C)
    row_ok = rows < C
    _, _, new, _, weights = _forward_parts(s_ptr, u_ptr, d_ptr, batch, rows, row_ok, C, row, TOP)
    tl.store(new_ptr + batch * C + rows, new, mask=row_ok)
    for start in range(0, W, BLOCK_W):
        cols = start + tl.arange(0, BLOCK_W)
        col_ok = cols < W
        v = tl.load(values_ptr + (batch * C + rows[:, None]) * W + cols[None, :],
                    mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        tl.store(read_ptr + batch * W + cols, tl.sum(weights[:, None] * v, 0), mask=col_ok)


@triton.jit
def _strength_backward_kernel(
    grad_new_ptr, grad_read_ptr,  # ∂ℓ/∂s_t (B, C), ∂ℓ/∂r (B, W)
    s_ptr, values_ptr, u_ptr, d_ptr,  # the op's inputs
    grad_s_ptr, grad_values_ptr, grad_u_ptr, grad_d_ptr,  # (B, C), (B, C, W), (B,), (B,)
    C, W, row,
    TOP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_C)
    row_ok = rows < C
    left, popped, new, room, weights = _forward_parts(s_ptr, u_ptr, d_ptr, batch, rows, row_ok, C, row, TOP)
    grad_weights = tl.zeros((BLOCK_C,), dtype=new.dtype)  # Σ_w ∂ℓ/∂r[w]·V[i, w]
    for start in range(0, W, BLOCK_W):
        cols = start + tl.arange(0, BLOCK_W)
        col_ok = cols < W
        tile = (batch * C + rows[:, None]) * W + cols[None, :]
        tile_ok = row_ok[:, None] & col_ok[None, :]
        grad_read = tl.load(grad_read_ptr + batch * W + cols, mask=col_ok, other=0.0)
        grad_weights += tl.sum(tl.load(values_ptr + tile, mask=tile_ok, other=0.0) * grad_read[None, :], 1)
        tl.store(grad_values_ptr + tile, weights[:, None] * grad_read[None, :], mask=tile_ok)
    take = new <= room
    grad_beyond = tl.where(room > 0, -tl.where(take, 0.0, grad_weights), 0.0)  # through max(0, 1 − β(s_t))
    grad_new = tl.load(grad_new_ptr + batch * C + rows, mask=row_ok, other=0.0)
    grad_new += tl.where(take, grad_weights, 0.0) + _beyond(grad_beyond, not TOP)  # the adjoint scan
    grad_new = tl.where(row_ok, grad_new, 0.0)
    pushed = rows == row
    tl.store(grad_d_ptr + batch, tl.sum(tl.where(pushed, grad_new, 0.0), 0))
    grad_diff = tl.where((popped > 0) & (rows != row), grad_new, 0.0)  # through max(0, s − ·); s_t[t] = d
    grad_x = tl.where(left > 0, -grad_diff, 0.0)  # through max(0, u − β(s))
    tl.store(grad_u_ptr + batch, tl.sum(tl.where(row_ok, grad_x, 0.0), 0))
    tl.store(grad_s_ptr + batch * C + rows, grad_diff + _beyond(-grad_x, not TOP), mask=row_ok)


def strength_forward(strengths: torch.Tensor, values: torch.Tensor, pop: torch.Tensor, push: torch.Tensor, row: int,
                     top: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """s_t (B, C) and r (B, W)."""
    strengths, values, pop, push = (x.contiguous() for x in (strengths, values, pop, push))
    batch, capacity, width = values.shape
    block_c, block_w = _blocks(capacity, width)
    new, read = empty(batch, capacity, like=strengths), empty(batch, width, like=strengths)
    with launch_device(strengths):
        _strength_forward_kernel[(batch,)](strengths, values, pop, push, new, read, capacity, width, row,
                                           TOP=top, BLOCK_C=block_c, BLOCK_W=block_w, num_warps=NUM_WARPS)
    return new, read


def strength_backward(grad_strengths: torch.Tensor, grad_read: torch.Tensor, strengths: torch.Tensor,
                      values: torch.Tensor, pop: torch.Tensor, push: torch.Tensor, row: int,
                      top: bool) -> tuple[torch.Tensor, ...]:
    """∂ℓ/∂s_{t−1} (B, C), ∂ℓ/∂V_t (B, C, W), ∂ℓ/∂u (B,), ∂ℓ/∂d (B,)."""
    tensors = (grad_strengths, grad_read, strengths, values, pop, push)
    grad_strengths, grad_read, strengths, values, pop, push = (x.contiguous() for x in tensors)
    batch, capacity, width = values.shape
    block_c, block_w = _blocks(capacity, width)
    grad_s, grad_values = empty(batch, capacity, like=strengths), empty(batch, capacity, width, like=strengths)
    grad_u, grad_d = empty(batch, like=strengths), empty(batch, like=strengths)
    with launch_device(strengths):
        _strength_backward_kernel[(batch,)](
            grad_strengths, grad_read, strengths, values, pop, push, grad_s, grad_values, grad_u, grad_d,
            capacity, width, row, TOP=top, BLOCK_C=block_c, BLOCK_W=block_w, num_warps=NUM_WARPS)
    return grad_s, grad_values, grad_u, grad_d
