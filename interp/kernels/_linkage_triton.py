"""Triton kernels of the fused linkage step (the math is in `diffvm.interp.kernels.linkage`).

Notation (docs/NOTATION.md): B batch, N slots, R read heads. Both kernels run one program per
(example, block of BLOCK_I rows of L); a program sweeps its rows in tiles of BLOCK_I × BLOCK_J,
reading each tile of L_{t−1} once. Sums along a row (f, and the row terms of the backward) stay
in registers; sums down a column (b, and the column terms of the backward) cross the programs of
one example, so each program writes its partial column sums to a (B, N / BLOCK_I, ·, N) buffer
that PyTorch adds up after the launch: deterministic, unlike atomic adds, at the cost of
R / BLOCK_I of the link matrix's traffic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from diffvm.interp.kernels._dispatch import empty, launch_device

__all__ = ["link_backward", "link_forward"]

# Elements of the (BLOCK_R, BLOCK_I, BLOCK_J) products a program holds at once: the row block
# shrinks as the heads grow so that registers do not spill. Not tuned on a GPU yet.
TILE_ELEMENTS = 8192
BLOCK_J = 64  # columns per tile: 64 contiguous floats, whole 256-byte segments in float32
NUM_WARPS = 4


def _blocks(slots: int, heads: int) -> tuple[int, int, int]:
    """BLOCK_I, BLOCK_J, BLOCK_R for N = `slots`, R = `heads` (powers of two, as tl.arange needs)."""
    block_r = triton.next_power_of_2(heads)
    block_j = min(BLOCK_J, triton.next_power_of_2(slots))
    block_i = min(max(16, TILE_ELEMENTS // (block_r * BLOCK_J)), triton.next_power_of_2(slots))
    return block_i, block_j, block_r


@triton.jit
def _link_forward_kernel(
    link_ptr, w_ptr, p_ptr, reads_ptr,  # L_{t−1} (B, N, N), w (B, N), p (B, N), r (B, R, N)
    new_link_ptr, forward_ptr, backward_part_ptr,  # L_t (B, N, N), f (B, R, N), partial b (B, NB, R, N)
    N, R, NB,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_R: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    rows = block * BLOCK_I + tl.arange(0, BLOCK_I)  # (BI,)
    heads = tl.arange(0, BLOCK_R)  # (BR,)
    row_ok, head_ok = rows < N, heads < R
    vectors, reads = batch * N, batch * R * N
    w_i = tl.load(w_ptr + vectors + rows, mask=row_ok, other=0.0)  # (BI,)
    head_rows = reads + heads[:, None] * N + rows[None, :]  # (BR, BI)
    head_rows_ok = head_ok[:, None] & row_ok[None, :]
    r_i = tl.load(reads_ptr + head_rows, mask=head_rows_ok, other=0.0)  # (BR, BI)
    forward = tl.zeros((BLOCK_R, BLOCK_I), dtype=w_i.dtype)
    for start in range(0, N, BLOCK_J):
        cols = start + tl.arange(0, BLOCK_J)  # (BJ,)
        col_ok = cols < N
        tile = batch * N * N + rows[:, None] * N + cols[None, :]  # (BI, BJ)
        tile_ok = row_ok[:, None] & col_ok[None, :]
        link = tl.load(link_ptr + tile, mask=tile_ok, other=0.0)
        w_j = tl.load(w_ptr + vectors + cols, mask=col_ok, other=0.0)
        p_j = tl.load(p_ptr + vectors + cols, mask=col_ok, other=0.0)
        new = (1 - w_i[:, None] - w_j[None, :]) * link + w_i[:, None] * p_j[None, :]
        new = tl.where(rows[:, None] == cols[None, :], 0.0, new)  # L_t[i, i] = 0
        tl.store(new_link_ptr + tile, new, mask=tile_ok)
        head_cols_ok = head_ok[:, None] & col_ok[None, :]
        r_j = tl.load(reads_ptr + reads + heads[:, None] * N + cols[None, :], mask=head_cols_ok, other=0.0)
        forward += tl.sum(new[None, :, :] * r_j[:, None, :], axis=2)  # (BR, BI): Σ_j L_t[i, j]·r[j]
        part = tl.sum(new[None, :, :] * r_i[:, :, None], axis=1)  # (BR, BJ): Σ_{i in block} L_t[i, j]·r[i]
        part_at = ((batch * NB + block) * R + heads[:, None]) * N + cols[None, :]
        tl.store(backward_part_ptr + part_at, part, mask=head_cols_ok)
    tl.store(forward_ptr + head_rows, forward, mask=head_rows_ok)


@triton.jit
def _link_backward_kernel(
    grad_link_ptr, grad_f_ptr, grad_b_ptr,  # ∂ℓ/∂L_t (B, N, N), ∂ℓ/∂f (B, R, N), ∂ℓ/∂b (B, R, N)
    link_ptr, w_ptr, p_ptr, reads_ptr,  # the step's inputs
    grad_prev_ptr, grad_w_ptr, grad_r_ptr,  # ∂ℓ/∂L_{t−1} (B, N, N); row terms of ∂ℓ/∂w (B, N) and ∂ℓ/∂r (B, R, N)
    part_ptr,  # (B, NB, R + 2, N) column terms: ∂ℓ/∂r through f (R rows), of ∂ℓ/∂w, of ∂ℓ/∂p
    N, R, NB,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_R: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    rows = block * BLOCK_I + tl.arange(0, BLOCK_I)  # (BI,)
    heads = tl.arange(0, BLOCK_R)  # (BR,)
    row_ok, head_ok = rows < N, heads < R
    vectors, reads = batch * N, batch * R * N
    w_i = tl.load(w_ptr + vectors + rows, mask=row_ok, other=0.0)  # (BI,)
    head_rows = reads + heads[:, None] * N + rows[None, :]  # (BR, BI)
    head_rows_ok = head_ok[:, None] & row_ok[None, :]
    r_i = tl.load(reads_ptr + head_rows, mask=head_rows_ok, other=0.0)  # (BR, BI)
    gf_i = tl.load(grad_f_ptr + head_rows, mask=head_rows_ok, other=0.0)  # (BR, BI)
    grad_w = tl.zeros((BLOCK_I,), dtype=w_i.dtype)
    grad_r = tl.zeros((BLOCK_R, BLOCK_I), dtype=w_i.dtype)
    parts = (batch * NB + block) * (R + 2) * N
    for start in range(0, N, BLOCK_J):
        cols = start + tl.arange(0, BLOCK_J)  # (BJ,)
        col_ok = cols < N
        tile = batch * N * N + rows[:, None] * N + cols[None, :]  # (BI, BJ)
        tile_ok = row_ok[:, None] & col_ok[None, :]
        diagonal = rows[:, None] == cols[None, :]
        link = tl.load(link_ptr + tile, mask=tile_ok, other=0.0)
        w_j = tl.load(w_ptr + vectors + cols, mask=col_ok, other=0.0)
        p_j = tl.load(p_ptr + vectors + cols, mask=col_ok, other=0.0)
        new = tl.where(diagonal, 0.0, (1 - w_i[:, None] - w_j[None, :]) * link + w_i[:, None] * p_j[None, :])
        head_cols = reads + heads[:, None] * N + cols[None, :]  # (BR, BJ)
        head_cols_ok = head_ok[:, None] & col_ok[None, :]
        r_j = tl.load(reads_ptr + head_cols, mask=head_cols_ok, other=0.0)  # (BR, BJ)
        gb_j = tl.load(grad_b_ptr + head_cols, mask=head_cols_ok, other=0.0)  # (BR, BJ)
        # G = ∂ℓ/∂L_t + Σ_h gf[h, i]·r[h, j] + r[h, i]·gb[h, j], zero on the diagonal
        g = tl.load(grad_link_ptr + tile, mask=tile_ok, other=0.0)
        g += tl.sum(gf_i[:, :, None] * r_j[:, None, :] + r_i[:, :, None] * gb_j[:, None, :], axis=0)
        g = tl.where(diagonal, 0.0, g)
        tl.store(grad_prev_ptr + tile, g * (1 - w_i[:, None] - w_j[None, :]), mask=tile_ok)
        grad_w += tl.sum(g * (p_j[None, :] - link), axis=1)  # Σ_j G[i, j]·(p[j] − L[i, j])
        grad_r += tl.sum(new[None, :, :] * gb_j[:, None, :], axis=2)  # Σ_j L_t[i, j]·gb[j]
        part_f = tl.sum(new[None, :, :] * gf_i[:, :, None], axis=1)  # (BR, BJ): Σ_i L_t[i, j]·gf[i]
        tl.store(part_ptr + parts + heads[:, None] * N + cols[None, :], part_f, mask=head_cols_ok)
        part_w = -tl.sum(g * link, axis=0)  # (BJ,): −Σ_i G[i, j]·L[i, j]
        tl.store(part_ptr + parts + R * N + cols, part_w, mask=col_ok)
        part_p = tl.sum(g * w_i[:, None], axis=0)  # (BJ,): Σ_i G[i, j]·w[i]
        tl.store(part_ptr + parts + (R + 1) * N + cols, part_p, mask=col_ok)
    tl.store(grad_w_ptr + vectors + rows, grad_w, mask=row_ok)
    tl.store(grad_r_ptr + head_rows, grad_r, mask=head_rows_ok)


def link_forward(link: torch.Tensor, w: torch.Tensor, p: torch.Tensor,
                 reads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_t (B, N, N), f (B, R, N), b (B, R, N) from L_{t−1}, w, p (B, N) and r (B, R, N)."""
    link, w, p, reads = (x.contiguous() for x in (link, w, p, reads))
    batch, heads, slots = reads.shape
    block_i, block_j, block_r = _blocks(slots, heads)
    row_blocks = triton.cdiv(slots, block_i)
    new_link, forward = empty(batch, slots, slots, like=link), empty(batch, heads, slots, like=link)
    backward_part = empty(batch, row_blocks, heads, slots, like=link)
    with launch_device(link):
        _link_forward_kernel[(batch, row_blocks)](
            link, w, p, reads, new_link, forward, backward_part, slots, heads, row_blocks,
            BLOCK_I=block_i, BLOCK_J=block_j, BLOCK_R=block_r, num_warps=NUM_WARPS,
        )
    return new_link, forward, backward_part.sum(1)  # (B, R, N)


def link_backward(grad_link: torch.Tensor, grad_f: torch.Tensor, grad_b: torch.Tensor, link: torch.Tensor,
                  w: torch.Tensor, p: torch.Tensor, reads: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """∂ℓ/∂L_{t−1} (B, N, N), ∂ℓ/∂w (B, N), ∂ℓ/∂p (B, N), ∂ℓ/∂r (B, R, N)."""
    grad_link, grad_f, grad_b, link, w, p, reads = (
        x.contiguous() for x in (grad_link, grad_f, grad_b, link, w, p, reads))
    batch, heads, slots = reads.shape
    block_i, block_j, block_r = _blocks(slots, heads)
    row_blocks = triton.cdiv(slots, block_i)
    grad_prev, grad_w = empty(batch, slots, slots, like=link), empty(batch, slots, like=link)
    grad_r, parts = empty(batch, heads, slots, like=link), empty(batch, row_blocks, heads + 2, slots, like=link)
    with launch_device(link):
        _link_backward_kernel[(batch, row_blocks)](
            grad_link, grad_f, grad_b, link, w, p, reads, grad_prev, grad_w, grad_r, parts, slots, heads, row_blocks,
            BLOCK_I=block_i, BLOCK_J=block_j, BLOCK_R=block_r, num_warps=NUM_WARPS,
        )
    parts = parts.sum(1)  # (B, R + 2, N)
    grad_p = parts[:, heads + 1].clone()  # (B, N), its own storage: an op's outputs may not be views
    return grad_prev, grad_w + parts[:, heads], grad_p, grad_r + parts[:, :heads]
