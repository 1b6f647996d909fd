"""Temporal memory linkage of the DNC (Graves et al. 2016, Methods "Temporal memory linkage"),
with the link distribution sharpening of Csordás & Schmidhuber 2019 (§3.3).

Notation (docs/NOTATION.md): B batch, N memory slots, R read heads.

The link matrix L records the order of writes: L[i, j] is the degree to which slot i was written
right after slot j. The precedence p is the degree to which each slot was the last one written.
After the write weighting w = w^w_t of a step,

    L_t[i, j] = (1 − w[i] − w[j]) · L_{t−1}[i, j] + w[i] · p_{t−1}[j],   L_t[i, i] = 0
    p_t       = (1 − Σ_i w[i]) · p_{t−1} + w.

A read head that read w^r_{t−1} follows the links forwards (the slots written after it) or
backwards (the slots written before it):

    f_t = L_t w^r_{t−1},      b_t = L_tᵀ w^r_{t−1}.

With one-hot writes, L is the adjacency matrix of the write order (a doubly linked list over the
slots: each written slot points to the one written just before it, and a rewritten slot leaves
the list where it was), p is one-hot on the last written slot, and f, b step along the list.

Csordás & Schmidhuber sharpen f and b, whose noise compounds when reads are chained, with a
controller exponent s ≥ 1 per read head: S(d, s)[i] = d[i]^s / Σ_j d[j]^s.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["LINK_FLOOR", "LinkageState", "directional_weights", "initial_linkage", "sharpen_links", "update_linkage"]

# The largest entry below which a forward or backward weighting counts as noise in `sharpen_links`.
LINK_FLOOR = 1e-6


class LinkageState(NamedTuple):
    """The temporal linkage between steps.

    Attributes:
        link: (B, N, N) L, entries in [0, 1], zero diagonal.
        precedence: (B, N) p, summing to at most 1.
    """

    link: torch.Tensor
    precedence: torch.Tensor


def initial_linkage(batch: int, slots: int, *, device=None, dtype=None) -> LinkageState:
    """No writes yet: L = 0 and p = 0."""
    return LinkageState(torch.zeros(batch, slots, slots, device=device, dtype=dtype),
                        torch.zeros(batch, slots, device=device, dtype=dtype))


def update_linkage(state: LinkageState, write_weights: torch.Tensor) -> LinkageState:
    """L_t and p_t after a write.

    L_{t−1}·(1 − w[i] − w[j]) + w[i]·p[j] is computed in three passes over one new (B, N, N)
    tensor, by products with vectors only, and differentiated by hand (`_LinkUpdate`): the
    backward saves L_{t−1} (which the previous step's reads saved already) and vectors, never a
    second N×N tensor per step.

    Args:
        state: L_{t−1} (B, N, N) and p_{t−1} (B, N).
        write_weights: (B, N) w^w_t, summing to at most 1.
    Returns:
        the `LinkageState` L_t, p_t.
    """
    link, precedence = state
    new_link = _LinkUpdate.apply(link, write_weights, precedence)  # (B, N, N)
    new_precedence = (1 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights  # (B, N)
    return LinkageState(new_link, new_precedence)


class _LinkUpdate(torch.autograd.Function):
    """L' = L·(1 − w[i] − w[j]) + w[i]·p[j] with a zero diagonal, and its gradient by hand.

    Autograd of the three-op form runs about ten passes over (B, N, N) tensors in the backward
    (one per partial derivative, plus the accumulations); this backward runs five. With G = ∂ℓ/∂L'
    off the diagonal (the diagonal of L' is constant):

        ∂ℓ/∂L[i, j] = G[i, j]·(1 − w[i] − w[j])
        ∂ℓ/∂w[k]    = Σ_j G[k, j]·(p[j] − L[k, j]) − Σ_i G[i, k]·L[i, k]
        ∂ℓ/∂p[j]    = Σ_i G[i, j]·w[i]
    """

    @staticmethod
    def forward(ctx, link: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(link, w, p)
        new_link = link * (1 - w.unsqueeze(-1))  # (B, N, N)
        new_link.addcmul_(link, w.unsqueeze(-2), value=-1)  # (1 − w[i] − w[j])·L[i, j]
        new_link.baddbmm_(w.unsqueeze(-1), p.unsqueeze(-2))  # + w[i]·p[j]
        new_link.diagonal(dim1=-2, dim2=-1).zero_()  # L[i, i] = 0: a slot does not follow itself
        return new_link

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        link, w, p = ctx.saved_tensors
        g = grad.clone()  # (B, N, N); ours to change: the diagonal of L' does not depend on anything
        g.diagonal(dim1=-2, dim2=-1).zero_()
        grad_link = g * (1 - w.unsqueeze(-1))  # (B, N, N)
        grad_link.addcmul_(g, w.unsqueeze(-2), value=-1)
        gl = g.mul_(link)  # (B, N, N) G ⊙ L, in g's storage (g is not needed after this)
        diagonal = grad.diagonal(dim1=-2, dim2=-1)  # (B, N): taken out of the matvecs with `grad`
        grad_w = torch.bmm(grad, p.unsqueeze(-1)).squeeze(-1) - diagonal * p - gl.sum(-1) - gl.sum(-2)  # (B, N)
        grad_p = torch.bmm(w.unsqueeze(-2), grad).squeeze(-2) - w * diagonal  # (B, N)
        return grad_link, grad_w, grad_p


def directional_weights(link: torch.Tensor, read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward and backward weightings f = L w^r and b = Lᵀ w^r of every read head.

    Args:
        link: (B, N, N) L_t.
        read_weights: (B, R, N) w^r_{t−1}.
    Returns:
        forward f (B, R, N) and backward b (B, R, N), each summing to at most 1 per head.
    """
    forward = torch.matmul(read_weights, link.transpose(-2, -1))  # (B, R, N): f[i] = Σ_j L[i, j]·w[j]
    backward = torch.matmul(read_weights, link)  # (B, R, N): b[j] = Σ_i L[i, j]·w[i]
    return forward, backward


def sharpen_links(weights: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """S(d, s)[i] = d[i]^s / Σ_j d[j]^s (Csordás & Schmidhuber 2019, §3.3), fading to 0 as d → 0.

    Computed as r^s / max(Σ_j r[j]^s, 1) with r = d / max(max_j d[j], `LINK_FLOOR`). Where the
    largest entry of d is at least `LINK_FLOOR` this is the paper's quotient, with its largest
    term exactly 1: a huge s gives the argmax instead of underflowing to 0/0, and a one-hot d
    stays exactly one-hot. Below the floor d is link noise, not a link (all zero where no slot
    was written after, or before, the one read): the paper's quotient is 0/0 at d = 0 and would
    blow any speck of noise up to a full distribution, with a gradient ~1 / max_j d[j]; here
    (d / `LINK_FLOOR`)^s fades continuously to 0, as the unsharpened f and b do, and the gradient
    stays of order s / `LINK_FLOOR` at most. d is clamped at 0 first because L w can round a hair below it,
    and a fractional power of a negative number is NaN.

    Args:
        weights: (B, R, N) d, a forward or backward weighting.
        exponents: (B, R) s ≥ 1.
    Returns:
        (B, R, N), each head's row summing to 1, or to less where max_j d[j] < `LINK_FLOOR`.
    """
    d = weights.clamp_min(0)
    r = d / d.amax(-1, keepdim=True).clamp_min(LINK_FLOOR)  # (B, R, N), largest entry ≤ 1
    powered = r.pow(exponents.unsqueeze(-1))  # (B, R, N)
    return powered / powered.sum(-1, keepdim=True).clamp_min(1)  # (B, R, N)
