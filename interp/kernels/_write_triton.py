"""Triton kernels of the erase/add write fused with reads (the math is in `diffvm.interp.kernels.write`).

Notation (docs/NOTATION.md): B batch, N slots, W word width, H write heads, R read heads. The
memory is walked in (BLOCK_N, BLOCK_W) tiles, each loaded once per kernel:

- forward: one program per (example, block of columns) walks the slots, writes M_t's tiles and
  sums the reads Σ_n w^r[n]·X[n] of its columns;
- backward, rows: one program per (example, block of slots) walks the columns, writes ∂ℓ/∂M_{t−1}
  and sums ∂ℓ/∂w (over w) and ∂ℓ/∂w^r of its slots;
- backward, columns: one program per (example, block of columns) walks the slots and sums ∂ℓ/∂e
  and ∂ℓ/∂a of its columns.

The heads are loops (H and R are a handful); a head's sums go to its row of an (H or R, BLOCK)
accumulator by `tl.where`, since registers cannot be indexed. E_h, the product over the other
write heads, is a loop that skips head h: O(H²) multiplications per element, no division.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["write_backward", "write_forward"]

BLOCK_N = 32  # slots per tile. Not tuned on a GPU yet.
BLOCK_W = 64  # columns per tile. Not tuned on a GPU yet.
NUM_WARPS = 4


def _blocks(slots: int, width: int, heads: int, read_heads: int) -> dict[str, int]:
    return dict(BLOCK_N=min(BLOCK_N, triton.next_power_of_2(slots)),
                BLOCK_W=min(BLOCK_W, triton.next_power_of_2(width)),
                BLOCK_H=triton.next_power_of_2(heads), BLOCK_R=triton.next_power_of_2(max(read_heads, 1)))


@triton.jit
def _tile(memory_ptr, ww_ptr, erase_ptr, add_ptr, batch, rows, cols, tile_ok, row_ok, col_ok, N, W, H):
    """M_{t−1}, keep = Π_h (1 − w_h e_h) and M_t on one (BLOCK_N, BLOCK_W) tile."""
    memory = tl.load(memory_ptr + (batch * N + rows[:, None]) * W + cols[None, :], mask=tile_ok, other=0.0)
    keep = tl.full(memory.shape, 1.0, memory.dtype)
    added = tl.zeros(memory.shape, memory.dtype)
    for h in range(H):
        w = tl.load(ww_ptr + (batch * H + h) * N + rows, mask=row_ok, other=0.0)
        e = tl.load(erase_ptr + (batch * H + h) * W + cols, mask=col_ok, other=0.0)
        a = tl.load(add_ptr + (batch * H + h) * W + cols, mask=col_ok, other=0.0)
        keep *= 1 - w[:, None] * e[None, :]
        added += w[:, None] * a[None, :]
    return memory, keep, memory * keep + added


@triton.jit
def _others(ww_ptr, erase_ptr, batch, rows, cols, row_ok, col_ok, N, W, H, head, like):
    """E_head = Π_{h ≠ head} (1 − w_h e_h) on one tile."""
    product = tl.full(like.shape, 1.0, like.dtype)
    for h in range(H):
        w = tl.load(ww_ptr + (batch * H + h) * N + rows, mask=row_ok, other=0.0)
        e = tl.load(erase_ptr + (batch * H + h) * W + cols, mask=col_ok, other=0.0)
        product *= tl.where(h == head, 1.0, 1 - w[:, None] * e[None, :])
    return product


@triton.jit
def _read_grad(rw_ptr, grad_reads_ptr, batch, rows, cols, row_ok, col_ok, N, W, R, like):
    """∂ℓ/∂X = Σ_r w^r_r[n]·∂ℓ/∂r_r[w] on one tile."""
    total = tl.zeros(like.shape, like.dtype)
    for r in range(R):
        w = tl.load(rw_ptr + (batch * R + r) * N + rows, mask=row_ok, other=0.0)
        g = tl.load(grad_reads_ptr + (batch * R + r) * W + cols, mask=col_ok, other=0.0)
        total += w[:, None] * g[None, :]
    return total


@triton.jit
def _write_forward_kernel(
    memory_ptr, ww_ptr, erase_ptr, add_ptr, rw_ptr,  # M_{t−1} (B, N, W), w (B, H, N), e, a (B, H, W), w^r (B, R, N)
    new_ptr, reads_ptr,  # M_t (B, N, W), reads (B, R, W)
    N, W, H, R,
    BEFORE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_R: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    col_ok = cols < W
    heads = tl.arange(0, BLOCK_R)
    reads = tl.zeros((BLOCK_R, BLOCK_W), new_ptr.dtype.element_ty)
    for start in range(0, N, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        tile_ok = row_ok[:, None] & col_ok[None, :]
        memory, _, new = _tile(memory_ptr, ww_ptr, erase_ptr, add_ptr, batch, rows, cols, tile_ok, row_ok, col_ok,
                               N, W, H)
        tl.store(new_ptr + (batch * N + rows[:, None]) * W + cols[None, :], new, mask=tile_ok)
        read_from = memory if BEFORE else new
        for r in range(R):
            w = tl.load(rw_ptr + (batch * R + r) * N + rows, mask=row_ok, other=0.0)
            reads += tl.where(heads[:, None] == r, tl.sum(w[:, None] * read_from, 0)[None, :], 0.0)
    tl.store(reads_ptr + (batch * R + heads[:, None]) * W + cols[None, :], reads,
             mask=(heads[:, None] < R) & col_ok[None, :])


@triton.jit
def _write_backward_rows_kernel(
    grad_new_ptr, grad_reads_ptr,  # ∂ℓ/∂M_t (B, N, W), ∂ℓ/∂r (B, R, W)
    memory_ptr, ww_ptr, erase_ptr, add_ptr, rw_ptr,  # the op's inputs
    grad_memory_ptr, grad_ww_ptr, grad_rw_ptr,  # (B, N, W), (B, H, N), (B, R, N)
    N, W, H, R,
    BEFORE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    write_heads, read_heads = tl.arange(0, BLOCK_H), tl.arange(0, BLOCK_R)
    grad_ww = tl.zeros((BLOCK_H, BLOCK_N), grad_memory_ptr.dtype.element_ty)
    grad_rw = tl.zeros((BLOCK_R, BLOCK_N), grad_memory_ptr.dtype.element_ty)
    for start in range(0, W, BLOCK_W):
        cols = start + tl.arange(0, BLOCK_W)
        col_ok = cols < W
        tile_ok = row_ok[:, None] & col_ok[None, :]
        at = (batch * N + rows[:, None]) * W + cols[None, :]
        memory, keep, new = _tile(memory_ptr, ww_ptr, erase_ptr, add_ptr, batch, rows, cols, tile_ok, row_ok, col_ok,
                                  N, W, H)
        grad_read_from = _read_grad(rw_ptr, grad_reads_ptr, batch, rows, cols, row_ok, col_ok, N, W, R, memory)
        grad_new = tl.load(grad_new_ptr + at, mask=tile_ok, other=0.0)
        if BEFORE:
            tl.store(grad_memory_ptr + at, grad_new * keep + grad_read_from, mask=tile_ok)
            read_from = memory
        else:
            grad_new += grad_read_from
            tl.store(grad_memory_ptr + at, grad_new * keep, mask=tile_ok)
            read_from = new
        for r in range(R):
            g = tl.load(grad_reads_ptr + (batch * R + r) * W + cols, mask=col_ok, other=0.0)
            grad_rw += tl.where(read_heads[:, None] == r, tl.sum(read_from * g[None, :], 1)[None, :], 0.0)
        for h in range(H):
            e = tl.load(erase_ptr + (batch * H + h) * W + cols, mask=col_ok, other=0.0)
            a = tl.load(add_ptr + (batch * H + h) * W + cols, mask=col_ok, other=0.0)
            others = _others(ww_ptr, erase_ptr, batch, rows, cols, row_ok, col_ok, N, W, H, h, memory)
            part = tl.sum(grad_new * (a[None, :] - memory * e[None, :] * others), 1)  # (BLOCK_N,)
            grad_ww += tl.where(write_heads[:, None] == h, part[None, :], 0.0)
    tl.store(grad_ww_ptr + (batch * H + write_heads[:, None]) * N + rows[None, :], grad_ww,
             mask=(write_heads[:, None] < H) & row_ok[None, :])
    tl.store(grad_rw_ptr + (batch * R + read_heads[:, None]) * N + rows[None, :], grad_rw,
             mask=(read_heads[:, None] < R) & row_ok[None, :])


@triton.jit
def _write_backward_columns_kernel(
    grad_new_ptr, grad_reads_ptr,  # ∂ℓ/∂M_t (B, N, W), ∂ℓ/∂r (B, R, W)
    memory_ptr, ww_ptr, erase_ptr, add_ptr, rw_ptr,  # the op's inputs
    grad_erase_ptr, grad_add_ptr,  # (B, H, W), (B, H, W)
    N, W, H, R,
    BEFORE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_H: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    col_ok = cols < W
    write_heads = tl.arange(0, BLOCK_H)
    grad_erase = tl.zeros((BLOCK_H, BLOCK_W), grad_erase_ptr.dtype.element_ty)
    grad_add = tl.zeros((BLOCK_H, BLOCK_W), grad_erase_ptr.dtype.element_ty)
    for start in range(0, N, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        tile_ok = row_ok[:, None] & col_ok[None, :]
        memory = tl.load(memory_ptr + (batch * N + rows[:, None]) * W + cols[None, :], mask=tile_ok, other=0.0)
        grad_new = tl.load(grad_new_ptr + (batch * N + rows[:, None]) * W + cols[None, :], mask=tile_ok, other=0.0)
        if not BEFORE:
            grad_new += _read_grad(rw_ptr, grad_reads_ptr, batch, rows, cols, row_ok, col_ok, N, W, R, memory)
        for h in range(H):
            w = tl.load(ww_ptr + (batch * H + h) * N + rows, mask=row_ok, other=0.0)
            others = _others(ww_ptr, erase_ptr, batch, rows, cols, row_ok, col_ok, N, W, H, h, memory)
            at_head = write_heads[:, None] == h
            grad_add += tl.where(at_head, tl.sum(w[:, None] * grad_new, 0)[None, :], 0.0)
            grad_erase -= tl.where(at_head, tl.sum(w[:, None] * grad_new * memory * others, 0)[None, :], 0.0)
    at = (batch * H + write_heads[:, None]) * W + cols[None, :]
    ok = (write_heads[:, None] < H) & col_ok[None, :]
    tl.store(grad_erase_ptr + at, grad_erase, mask=ok)
    tl.store(grad_add_ptr + at, grad_add, mask=ok)


def write_forward(memory: torch.Tensor, write_weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor,
                  read_weights: torch.Tensor, reads_before_write: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """M_t (B, N, W) and the reads (B, R, W)."""
    memory, write_weights, erase, add, read_weights = (
        x.contiguous() for x in (memory, write_weights, erase, add, read_weights))
    (batch, slots, width), heads, read_heads = memory.shape, write_weights.shape[1], read_weights.shape[1]
    blocks = _blocks(slots, width, heads, read_heads)
    new, reads = empty(batch, slots, width, like=memory), empty(batch, read_heads, width, like=memory)
    with launch_device(memory):
        _write_forward_kernel[(batch, triton.cdiv(width, blocks["BLOCK_W"]))](
            memory, write_weights, erase, add, read_weights, new, reads, slots, width, heads, read_heads,
            BEFORE=reads_before_write, BLOCK_N=blocks["BLOCK_N"], BLOCK_W=blocks["BLOCK_W"],
            BLOCK_R=blocks["BLOCK_R"], num_warps=NUM_WARPS)
    return new, reads


def write_backward(grad_memory: torch.Tensor, grad_reads: torch.Tensor, memory: torch.Tensor,
                   write_weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor, read_weights: torch.Tensor,
                   reads_before_write: bool) -> tuple[torch.Tensor, ...]:
    """∂ℓ/∂M_{t−1} (B, N, W), ∂ℓ/∂w (B, H, N), ∂ℓ/∂e (B, H, W), ∂ℓ/∂a (B, H, W), ∂ℓ/∂w^r (B, R, N)."""
    tensors = (grad_memory, grad_reads, memory, write_weights, erase, add, read_weights)
    grad_memory, grad_reads, memory, write_weights, erase, add, read_weights = (x.contiguous() for x in tensors)
    (batch, slots, width), heads, read_heads = memory.shape, write_weights.shape[1], read_weights.shape[1]
    blocks = _blocks(slots, width, heads, read_heads)
    grad_prev, grad_ww = empty(batch, slots, width, like=memory), empty(batch, heads, slots, like=memory)
    grad_erase, grad_add = empty(batch, heads, width, like=memory), empty(batch, heads, width, like=memory)
    grad_rw = empty(batch, read_heads, slots, like=memory)
    inputs = (grad_memory, grad_reads, memory, write_weights, erase, add, read_weights)
    with launch_device(memory):
        _write_backward_rows_kernel[(batch, triton.cdiv(slots, blocks["BLOCK_N"]))](
            *inputs, grad_prev, grad_ww, grad_rw, slots, width, heads, read_heads, BEFORE=reads_before_write,
            num_warps=NUM_WARPS, **blocks)
        _write_backward_columns_kernel[(batch, triton.cdiv(width, blocks["BLOCK_W"]))](
            *inputs, grad_erase, grad_add, slots, width, heads, read_heads, BEFORE=reads_before_write,
            BLOCK_N=blocks["BLOCK_N"], BLOCK_W=blocks["BLOCK_W"], BLOCK_H=blocks["BLOCK_H"], num_warps=NUM_WARPS)
    return grad_prev, grad_ww, grad_erase, grad_add, grad_rw
