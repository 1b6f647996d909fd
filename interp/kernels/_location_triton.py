"""Triton kernels of the NTM's location addressing (the math is in `diffvm.interp.kernels.location`).

Notation (docs/NOTATION.md): B batch, H heads, N slots, S shift offsets. One program per
(example, head) holds all N slots in one block (N ≤ `MAX_SLOTS`). The shift reads w^g at rotated
slots; registers cannot be rotated, so w^g(i − d) is recomputed from w^c and w_{t−1} loaded at
the rotated addresses. The backward rotates ∂ℓ/∂w̃, which only exists in registers: the program
writes it to a scratch row, waits for every thread (`tl.debug_barrier`), and reads it back rotated.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["MAX_SLOTS", "location_backward", "location_forward"]

# The most slots one program holds; more would need the softmax and the shift across programs.
MAX_SLOTS = 16384
NUM_WARPS = 4


def _block(slots: int) -> int:
    if slots > MAX_SLOTS:
        raise ValueError(f"location_weights: the Triton kernel holds a head's weighting in one block, "
                         f"N ≤ {MAX_SLOTS}; got N = {slots}")
    return triton.next_power_of_2(slots)


@triton.jit
def _rotated(i, offset, N):
    """(i − offset) mod N, nonnegative whatever the sign convention of % (offset may exceed N)."""
    return ((i - offset) % N + N) % N


@triton.jit
def _shifted(content_ptr, previous_ptr, shifts_ptr, head, g, slots, ok, N, S):
    """w̃ = Σ_d s(d)·w^g(i − d mod N) on the slots of one head."""
    total = tl.zeros(slots.shape, dtype=g.dtype)
    for d in range(S):
        at = head * N + _rotated(slots, d - S // 2, N)
        interpolated = g * tl.load(content_ptr + at, mask=ok, other=0.0) + (1 - g) * tl.load(previous_ptr + at,
                                                                                           mask=ok, other=0.0)
        total += tl.load(shifts_ptr + head * S + d) * interpolated
    return total


@triton.jit
def _sharpened(shifted, gamma, ok, TINY: tl.constexpr):
    """log max(w̃, tiny) and softmax(γ·log max(w̃, tiny)) over the slots `ok`."""
    log_w = tl.log(tl.maximum(shifted, tl.full((), TINY, shifted.dtype)))
    z = tl.where(ok, gamma * log_w, float("-inf"))
    e = tl.exp(z - tl.max(z, 0))
    return log_w, e / tl.sum(e, 0)


@triton.jit
def _location_forward_kernel(
    content_ptr, previous_ptr, gate_ptr, shifts_ptr, gamma_ptr,  # w^c, w_{t−1} (B, H, N), g (B, H), s (B, H, S), γ
    out_ptr,  # w (B, H, N)
    N, S,
    TINY: tl.constexpr, BLOCK_N: tl.constexpr,
):
    head = tl.program_id(0).to(tl.int64)  # b·H + h
    slots = tl.arange(0, BLOCK_N)
    ok = slots < N
    shifted = _shifted(content_ptr, previous_ptr, shifts_ptr, head, tl.load(gate_ptr + head), slots, ok, N, S)
    _, weights = _sharpened(shifted, tl.load(gamma_ptr + head), ok, TINY)
    tl.store(out_ptr + head * N + slots, weights, mask=ok)


@triton.jit
def _location_backward_kernel(
    grad_ptr, content_ptr, previous_ptr, gate_ptr, shifts_ptr, gamma_ptr,  # ∂ℓ/∂w (B, H, N) and the op's inputs
    grad_content_ptr, grad_previous_ptr, grad_gate_ptr, grad_shifts_ptr, grad_gamma_ptr,
    scratch_ptr,  # (B, H, N): ∂ℓ/∂w̃, to be read back rotated
    N, S,
    TINY: tl.constexpr, BLOCK_N: tl.constexpr,
):
    head = tl.program_id(0).to(tl.int64)
    slots = tl.arange(0, BLOCK_N)
    ok = slots < N
    row = head * N + slots
    g, gamma = tl.load(gate_ptr + head), tl.load(gamma_ptr + head)
    shifted = _shifted(content_ptr, previous_ptr, shifts_ptr, head, g, slots, ok, N, S)
    log_w, weights = _sharpened(shifted, gamma, ok, TINY)
    grad = tl.load(grad_ptr + row, mask=ok, other=0.0)
    grad_z = weights * (grad - tl.sum(weights * grad, 0))  # through the softmax; 0 past N (w = 0 there)
    tl.store(grad_gamma_ptr + head, tl.sum(grad_z * log_w, 0))
    tiny = tl.full((), TINY, shifted.dtype)
    grad_shifted = tl.where(ok & (shifted >= tiny), gamma * grad_z / tl.maximum(shifted, tiny), 0.0)
    # ∂ℓ/∂s(d) = Σ_i ∂ℓ/∂w̃(i)·w^g(i − d), with w^g(i − d) from w^c and w_{t−1} at rotated slots
    for d in range(S):
        at = head * N + _rotated(slots, d - S // 2, N)
        interpolated = g * tl.load(content_ptr + at, mask=ok, other=0.0) + (1 - g) * tl.load(previous_ptr + at,
                                                                                           mask=ok, other=0.0)
        tl.store(grad_shifts_ptr + head * S + d, tl.sum(grad_shifted * interpolated, 0))
    tl.store(scratch_ptr + row, grad_shifted, mask=ok)
    tl.debug_barrier()  # every thread's part of ∂ℓ/∂w̃ is in the scratch row before any is read rotated
    grad_interpolated = tl.zeros((BLOCK_N,), dtype=shifted.dtype)  # Σ_d s(d)·∂ℓ/∂w̃(j + d)
    for d in range(S):
        ahead = tl.load(scratch_ptr + head * N + _rotated(slots, S // 2 - d, N), mask=ok, other=0.0)
        grad_interpolated += tl.load(shifts_ptr + head * S + d) * ahead
    content = tl.load(content_ptr + row, mask=ok, other=0.0)
    previous = tl.load(previous_ptr + row, mask=ok, other=0.0)
    tl.store(grad_content_ptr + row, g * grad_interpolated, mask=ok)
    tl.store(grad_previous_ptr + row, (1 - g) * grad_interpolated, mask=ok)
    tl.store(grad_gate_ptr + head, tl.sum(grad_interpolated * (content - previous), 0))


def location_forward(content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor, shifts: torch.Tensor,
                     gamma: torch.Tensor) -> torch.Tensor:
    """w (B, H, N)."""
    content, previous, gate, shifts, gamma = (x.contiguous() for x in (content, previous, gate, shifts, gamma))
    batch, heads, slots = content.shape
    out = empty(batch, heads, slots, like=content)
    with launch_device(content):
        _location_forward_kernel[(batch * heads,)](
            content, previous, gate, shifts, gamma, out, slots, shifts.shape[-1],
            TINY=torch.finfo(content.dtype).tiny, BLOCK_N=_block(slots), num_warps=NUM_WARPS)
    return out


def location_backward(grad: torch.Tensor, content: torch.Tensor, previous: torch.Tensor, gate: torch.Tensor,
                      shifts: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """∂ℓ/∂w^c, ∂ℓ/∂w_{t−1} (B, H, N), ∂ℓ/∂g (B, H), ∂ℓ/∂s (B, H, S), ∂ℓ/∂γ (B, H)."""
    tensors = (grad, content, previous, gate, shifts, gamma)
    grad, content, previous, gate, shifts, gamma = (x.contiguous() for x in tensors)
    batch, heads, slots = content.shape
    grads = [empty(*x.shape, like=content) for x in (content, previous, gate, shifts, gamma)]
    scratch = empty(batch, heads, slots, like=content)
    with launch_device(content):
        _location_backward_kernel[(batch * heads,)](
            grad, content, previous, gate, shifts, gamma, *grads, scratch, slots, shifts.shape[-1],
            TINY=torch.finfo(content.dtype).tiny, BLOCK_N=_block(slots), num_warps=NUM_WARPS)
    return tuple(grads)
