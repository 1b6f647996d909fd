"""Triton kernels of fused content addressing (the math is in `diffvm.interp.kernels.content`).

Notation (docs/NOTATION.md): B batch, N slots, W word width, H heads. A word fits one tile
(W ≤ `MAX_WIDTH`).

- Forward: one program per (example, head) sweeps the memory twice in blocks of BLOCK_N rows:
  the first sweep writes z = β·D into the output and keeps the running maximum and the running
  sum of exp(z − max) (the online softmax), the second turns z into y.
- Backward: one program per (example, block of BLOCK_N rows) loads its rows of M once and loops
  over the heads. ∂ℓ/∂M of its rows is complete in the program; the sums over slots that ∂ℓ/∂k,
  ∂ℓ/∂β and ∂ℓ/∂q need cross the programs of one example, so each program writes its partial
  sums to a (B, N / BLOCK_N, H, ·) buffer that PyTorch adds up after the launch (deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["MAX_WIDTH", "content_backward", "content_forward"]

# The widest word a tile holds; wider words would need a loop over W that no device needs yet.
MAX_WIDTH = 1024
# Elements of the (BLOCK_N, BLOCK_W) memory tile a program holds. Not tuned on a GPU yet.
TILE_ELEMENTS = 4096
NUM_WARPS = 4


def _blocks(slots: int, width: int) -> tuple[int, int]:
    if width > MAX_WIDTH:
        raise ValueError(f"content_weights: the Triton kernel holds a word in one tile, W ≤ {MAX_WIDTH}; "
                         f"got W = {width}")
    block_w = triton.next_power_of_2(width)
    return min(max(1, TILE_ELEMENTS // block_w), triton.next_power_of_2(slots)), block_w


@triton.jit
def _content_forward_kernel(
    memory_ptr, keys_ptr, strengths_ptr, mask_sq_ptr,  # M (B, N, W), k (B, H, W), β (B, H), q (B, H, W)
    out_ptr,  # y (B, H, N)
    N, H, W,
    EPS: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    head = batch * H + tl.program_id(1)
    cols = tl.arange(0, BLOCK_W)
    col_ok = cols < W
    k = tl.load(keys_ptr + head * W + cols, mask=col_ok, other=0.0)  # (BW,)
    if HAS_MASK:
        q = tl.load(mask_sq_ptr + head * W + cols, mask=col_ok, other=0.0)
    else:
        q = tl.where(col_ok, 1.0, 0.0).to(k.dtype)
    beta = tl.load(strengths_ptr + head)
    kq = k * q
    key_norm = tl.sqrt(tl.sum(k * kq, 0) + EPS)
    out = out_ptr + head * N
    running_max = tl.full((), float("-inf"), k.dtype)
    running_sum = tl.full((), 0.0, k.dtype)
    for start in range(0, N, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)  # (BN,)
        row_ok = rows < N
        tile = batch * N * W + rows[:, None] * W + cols[None, :]  # (BN, BW)
        m = tl.load(memory_ptr + tile, mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        dot = tl.sum(m * kq[None, :], 1)  # (BN,)
        mem_norm = tl.sqrt(tl.sum(m * m * q[None, :], 1) + EPS)
        z = tl.where(row_ok, beta * (dot / (key_norm * mem_norm)), float("-inf"))
        new_max = tl.maximum(running_max, tl.max(z, 0))  # finite from the first block on (N ≥ 1)
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(z - new_max), 0)
        running_max = new_max
        tl.store(out + rows, z, mask=row_ok)
    for start in range(0, N, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        z = tl.load(out + rows, mask=row_ok, other=0.0)
        tl.store(out + rows, tl.exp(z - running_max) / running_sum, mask=row_ok)


@triton.jit
def _content_backward_kernel(
    grad_ptr, weights_ptr, centre_ptr,  # ∂ℓ/∂y (B, H, N), y (B, H, N), Σ_n y·∂ℓ/∂y (B, H)
    memory_ptr, keys_ptr, strengths_ptr, mask_sq_ptr,  # the op's inputs
    grad_memory_ptr,  # ∂ℓ/∂M (B, N, W)
    along_ptr, grad_strengths_ptr, mem_sq_ptr,  # partial sums (B, NB, H, W), (B, NB, H), (B, NB, H, W)
    N, H, W, NB,
    EPS: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    rows = block * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,)
    cols = tl.arange(0, BLOCK_W)  # (BW,)
    row_ok, col_ok = rows < N, cols < W
    tile = batch * N * W + rows[:, None] * W + cols[None, :]  # (BN, BW)
    tile_ok = row_ok[:, None] & col_ok[None, :]
    m = tl.load(memory_ptr + tile, mask=tile_ok, other=0.0)
    grad_m = tl.zeros((BLOCK_N, BLOCK_W), dtype=m.dtype)
    for h in range(H):
        head = batch * H + h
        k = tl.load(keys_ptr + head * W + cols, mask=col_ok, other=0.0)  # (BW,)
        if HAS_MASK:
            q = tl.load(mask_sq_ptr + head * W + cols, mask=col_ok, other=0.0)
        else:
            q = tl.where(col_ok, 1.0, 0.0).to(k.dtype)
        beta = tl.load(strengths_ptr + head)
        centre = tl.load(centre_ptr + head)
        kq = k * q
        key_norm = tl.sqrt(tl.sum(k * kq, 0) + EPS)
        y = tl.load(weights_ptr + head * N + rows, mask=row_ok, other=0.0)  # (BN,)
        gy = tl.load(grad_ptr + head * N + rows, mask=row_ok, other=0.0)
        mem_norm = tl.sqrt(tl.sum(m * m * q[None, :], 1) + EPS)  # (BN,)
        similarity = tl.sum(m * kq[None, :], 1) / (key_norm * mem_norm)  # D
        grad_z = y * (gy - centre)  # through the softmax; 0 on rows past N (y = 0 there)
        grad_sim = beta * grad_z
        a = grad_sim / (key_norm * mem_norm)  # through the dot product
        e = -grad_sim * similarity / (mem_norm * mem_norm)  # through ‖M[n]‖, divided by ‖M[n]‖
        grad_m += a[:, None] * kq[None, :] + e[:, None] * q[None, :] * m
        part = (batch * NB + block) * H + h
        tl.store(along_ptr + part * W + cols, tl.sum(a[:, None] * m, 0), mask=col_ok)
        tl.store(mem_sq_ptr + part * W + cols, tl.sum(e[:, None] * m * m, 0), mask=col_ok)
        tl.store(grad_strengths_ptr + part, tl.sum(grad_z * similarity, 0))
    tl.store(grad_memory_ptr + tile, grad_m, mask=tile_ok)


def content_forward(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor, mask_sq: torch.Tensor | None,
                    eps: float) -> torch.Tensor:
    """y (B, H, N) from M (B, N, W), k (B, H, W), β (B, H) and q (B, H, W) or None."""
    memory, keys, strengths = memory.contiguous(), keys.contiguous(), strengths.contiguous()
    (batch, slots, width), heads = memory.shape, keys.shape[1]
    block_n, block_w = _blocks(slots, width)
    out = empty(batch, heads, slots, like=memory)
    with launch_device(memory):
        _content_forward_kernel[(batch, heads)](
            memory, keys, strengths, keys if mask_sq is None else mask_sq.contiguous(), out, slots, heads, width,
            EPS=eps, HAS_MASK=mask_sq is not None, BLOCK_N=block_n, BLOCK_W=block_w, num_warps=NUM_WARPS,
        )
    return out


def content_backward(grad: torch.Tensor, weights: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
                     strengths: torch.Tensor, mask_sq: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, ...]:
    """∂ℓ/∂M (B, N, W), ∂ℓ/∂k (B, H, W), ∂ℓ/∂β (B, H), ∂ℓ/∂q (B, H, W; empty without a mask)."""
    grad, weights, memory, keys, strengths = (x.contiguous() for x in (grad, weights, memory, keys, strengths))
    (batch, slots, width), heads = memory.shape, keys.shape[1]
    block_n, block_w = _blocks(slots, width)
    row_blocks = triton.cdiv(slots, block_n)
    centre = (weights * grad).sum(-1)  # (B, H)
    grad_memory = empty(batch, slots, width, like=memory)
    along = empty(batch, row_blocks, heads, width, like=memory)
    mem_sq = empty(batch, row_blocks, heads, width, like=memory)
    grad_strengths = empty(batch, row_blocks, heads, like=memory)
    with launch_device(memory):
        _content_backward_kernel[(batch, row_blocks)](
            grad, weights, centre, memory, keys, strengths, keys if mask_sq is None else mask_sq.contiguous(),
            grad_memory, along, grad_strengths, mem_sq, slots, heads, width, row_blocks,
            EPS=eps, HAS_MASK=mask_sq is not None, BLOCK_N=block_n, BLOCK_W=block_w, num_warps=NUM_WARPS,
        )
    along, mem_sq, grad_strengths = along.sum(1), mem_sq.sum(1), grad_strengths.sum(1)  # (B, H, W), (B, H, W), (B, H)
    q = torch.ones_like(keys) if mask_sq is None else mask_sq
    key_norm_sq = (keys * keys * q).sum(-1, keepdim=True) + eps  # (B, H, 1) ‖k‖²
    through_key_norm = -(strengths * grad_strengths).unsqueeze(-1) / key_norm_sq  # (B, H, 1)
    grad_keys = q * (along + through_key_norm * keys)  # (B, H, W)
    if mask_sq is None:
        return grad_memory, grad_keys, grad_strengths, keys.new_empty(0)
    grad_mask_sq = keys * along + through_key_norm * keys * keys / 2 + mem_sq / 2  # (B, H, W)
    return grad_memory, grad_keys, grad_strengths, grad_mask_sq
