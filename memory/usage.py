"""Dynamic memory allocation of the DNC (Graves et al. 2016, Methods "Dynamic memory allocation").

Notation (docs/NOTATION.md): B batch, N memory slots, R read heads.

Each slot has a usage u ∈ [0, 1]. A write raises the usage of the slots it touches; a read head
whose free gate f is open releases the slots it read at the last step:

    ψ_t = Π_i (1 − f^i_t · w^{r,i}_{t−1})                                     retention
    u_t = (u_{t−1} + w^w_{t−1} − u_{t−1} ∘ w^w_{t−1}) ∘ ψ_t                    usage

The allocation weighting offers the least used slots for writing. With φ_t the slot indices
sorted by ascending usage (the "free list"),

    a_t[φ_t[j]] = (1 − u_t[φ_t[j]]) · Π_{i<j} u_t[φ_t[i]].

On binary usages this is one-hot on the first free slot of the free list, or zero when every
slot is used: the allocator of a discrete heap.
"""

from __future__ import annotations

import torch

__all__ = ["USAGE_ORDER_ULPS", "allocation_weights", "retention", "update_usage", "usage_order_resolution"]

# Usages closer than this many units of their dtype's round-off (machine ε) are tied for the free
# list's order (ties keep index order): ≈ 9e-13 in float64, ≈ 5e-4 in float32. Round-off of a
# near-one-hot read (1 − ε) leaves a freed slot a usage of ~ε, which would otherwise send it behind
# never-used slots and break the hard DNC's lowest-free-slot rule. The allocation jumps at a tie in
# any case (see `allocation_weights`); this moves where it jumps by at most this much.
USAGE_ORDER_ULPS = 4096


def usage_order_resolution(dtype: torch.dtype) -> float:
    """The grid the free list's order compares usages of `dtype` on (`USAGE_ORDER_ULPS` · ε)."""
    return USAGE_ORDER_ULPS * torch.finfo(dtype).eps


def retention(free_gates: torch.Tensor, read_weights: torch.Tensor) -> torch.Tensor:
    """ψ = Π_i (1 − f^i · w^{r,i}_{t−1}): how much of each slot survives the free gates.

    Args:
        free_gates: (B, R) f in [0, 1].
        read_weights: (B, R, N) the read weightings of the previous step, w^r_{t−1}.
    Returns:
        (B, N) ψ in [0, 1].
    """
    return (1 - free_gates.unsqueeze(-1) * read_weights).prod(1)  # (B, N)


def update_usage(usage: torch.Tensor, write_weights: torch.Tensor, retention: torch.Tensor) -> torch.Tensor:
    """u_t = (u_{t−1} + w^w_{t−1} − u_{t−1} ∘ w^w_{t−1}) ∘ ψ_t.

    Written as u + (1 − u)·w, the same value, which in floating point never rounds above 1 when
    u and w are in [0, 1] (the usage invariant the allocation's product relies on).

    Args:
        usage: (B, N) u_{t−1} in [0, 1].
        write_weights: (B, N) the previous step's write weighting w^w_{t−1}.
        retention: (B, N) ψ_t from `retention`.
    Returns:
        (B, N) u_t in [0, 1].
    """
    return (usage + (1 - usage) * write_weights) * retention


def allocation_weights(usage: torch.Tensor) -> torch.Tensor:
    """a[φ_j] = (1 − u[φ_j]) · Π_{i<j} u[φ_i], φ the slots sorted by ascending usage.

    Vectorised as sort, exclusive cumulative product, scatter back. The sort is stable and compares
    usages on the grid of `usage_order_resolution`, so slots of equal usage (up to round-off) keep their index
    order: on binary usages the allocation is the lowest-indexed free slot. The permutation φ is
    piecewise constant and carries no gradient; the gradient flows
    through the sorted usage values, so a is differentiable wherever the usages are distinct.
    Where two usages tie and move apart, φ swaps them and a jumps (it is discontinuous there, not
    merely kinked): with u = (x, x) the allocation is (1 − x, (1 − x)·x), with u = (x, x − δ) it is
    near ((1 − x)·x, 1 − x). Ties that every input keeps (slots never written, or written alike)
    are harmless: the order, and so the function, stays the same around them.

    Args:
        usage: (B, N) u in [0, 1].
    Returns:
        (B, N) a, nonnegative, summing to 1 − Π_i u[i] ≤ 1.
    """
    # the order compares usages on a grid of usage_order_resolution: a slot freed by a read of weight
    # 1 − 2⁻⁵² keeps a usage of 2⁻⁵², which must not send it behind a never-used slot of higher index
    grid = usage_order_resolution(usage.dtype)
    order = torch.sort(torch.round(usage / grid), dim=-1, stable=True).indices  # (B, N) φ_j
    sorted_usage = usage.gather(-1, order)  # (B, N) u[φ_j], differentiable
    ones = torch.ones_like(sorted_usage[:, :1])  # (B, 1)
    # Π_{i<j} u[φ_i]: the cumulative product of [1, u[φ_0], …, u[φ_{N−2}]]
    before = torch.cumprod(torch.cat([ones, sorted_usage[:, :-1]], dim=-1), dim=-1)  # (B, N)
    sorted_allocation = (1 - sorted_usage) * before  # (B, N), in free-list order
    return torch.zeros_like(usage).scatter(-1, order, sorted_allocation)  # (B, N), a[φ_j] = sorted[j]
