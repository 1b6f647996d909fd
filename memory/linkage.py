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

The sparse link matrix (Graves et al. 2016, Methods "Sparse link matrix"; K = 8 there) costs
O(N·K) per step instead of O(N²): each row of L keeps at most K entries, stored as (B, N, K)
column indices and values (`SparseLinkageState`). One step of `sparse_linkage_step` is

    p̂         = the K largest entries of p_{t−1}, the others set to 0
    L̃[i, j]   = (1 − w[i] − w[j]) · L̂_{t−1}[i, j] + w[i] · p̂[j],   L̃[i, i] = 0
    L̂_t[i, ·] = the K largest entries of row i of L̃, the others set to 0
    p_t       = (1 − Σ_i w[i]) · p_{t−1} + w                          (dense and exact)

so what is approximated is exactly this: the precedence that new links are made from is cut to
its K largest entries, and each row of the link matrix is cut to its K largest entries after
every update. The write weighting w stays dense (the paper also cuts ŵ to K entries to make the
outer product K×K; in this row-sparse layout a dense w costs the same O(N·K), so it is not cut).
Nothing else changes: f = L̂_t w^r and b = L̂_tᵀ w^r are exact products with the sparse matrix.
With K ≥ N nothing is cut and the step equals the dense one. With one-hot (or zero) writes, such
as the hard DNC's allocating writes, p is one-hot and every row of L holds at most one nonzero
entry, so for any K ≥ 1 nothing is cut either: the write order is that of the dense link matrix.
Ties at the cut (equal entries of which only some fit) are broken by `torch.topk`; the function
is continuous across a tie only where the tied entries are zero.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["LINK_FLOOR", "LinkageState", "SparseLinkageState", "directional_weights", "initial_linkage",
           "initial_sparse_linkage", "sharpen_links", "sparse_linkage_step", "update_linkage"]

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


class SparseLinkageState(NamedTuple):
    """The sparse temporal linkage between steps (module docstring): row i of L̂ is zero except at
    the K columns index[i, :], where it holds value[i, :].

    Attributes:
        index: (B, N, K) int64 column indices j, distinct within each row.
        value: (B, N, K) L̂[i, index[i, k]] in [0, 1]; zero where a row has fewer than K links.
        precedence: (B, N) p, dense, summing to at most 1.
    """

    index: torch.Tensor
    value: torch.Tensor
    precedence: torch.Tensor


def initial_linkage(batch: int, slots: int, *, device=None, dtype=None) -> LinkageState:
    """No writes yet: L = 0 and p = 0."""
    return LinkageState(torch.zeros(batch, slots, slots, device=device, dtype=dtype),
                        torch.zeros(batch, slots, device=device, dtype=dtype))


def initial_sparse_linkage(batch: int, slots: int, top_k: int, *, device=None,
                           dtype=None) -> SparseLinkageState:
    """No writes yet: every row holds K zero entries, at columns 0 … K−1 (distinct, as the
    update needs); K is `top_k`, at most `slots` (K = N keeps every entry: the dense link)."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"initial_sparse_linkage: top_k must be an integer ≥ 1, got {top_k!r}")
    k = min(top_k, slots)
    index = torch.arange(k, device=device).expand(batch, slots, k).clone()  # (B, N, K)
    return SparseLinkageState(index, torch.zeros(batch, slots, k, device=device, dtype=dtype),
                              torch.zeros(batch, slots, device=device, dtype=dtype))


def sparse_linkage_step(state: SparseLinkageState, write_weights: torch.Tensor,
                        read_weights: torch.Tensor) -> tuple[SparseLinkageState, torch.Tensor, torch.Tensor]:
    """One step of the sparse link matrix (module docstring) and the directional weightings.

    The sparse counterpart of `diffvm.interp.kernels.linkage_step`: L̂_t, p_t, f_t = L̂_t w^r_{t−1}
    and b_t = L̂_tᵀ w^r_{t−1}, in O(B·N·K) time and memory (O(B·R·N·K) for f and b). Gradients flow
    through the kept values by autograd; the choice of what is kept carries none.

    Args:
        state: a `SparseLinkageState` with K entries per row.
        write_weights: (B, N) w^w_t, summing to at most 1.
        read_weights: (B, R, N) w^r_{t−1}.
    Returns:
        the `SparseLinkageState` L̂_t, p_t, forward f_t (B, R, N) and backward b_t (B, R, N).
    """
    index, value, precedence = state
    batch, slots, k = index.shape
    w = write_weights
    if w.shape != (batch, slots) or precedence.shape != (batch, slots) or read_weights.dim() != 3 \
            or read_weights.shape[::2] != (batch, slots):
        raise ValueError(f"sparse_linkage_step: expected index/value (B, N, K), precedence (B, N), write_weights "
                         f"(B, N) and read_weights (B, R, N), got index {tuple(index.shape)}, precedence "
                         f"{tuple(precedence.shape)}, write_weights {tuple(w.shape)}, read_weights "
                         f"{tuple(read_weights.shape)}")
    p_values, p_index = precedence.topk(k, dim=-1)  # (B, K) each: p̂'s support, K distinct columns
    # slot j's place m in p̂'s support (p_index[m] = j), or K off the support
    place = torch.full_like(precedence, k, dtype=torch.long).scatter(
        -1, p_index, torch.arange(k, device=index.device).expand(batch, k))  # (B, N)
    columns = index.flatten(1)  # (B, N·K)
    old_place = place.gather(-1, columns).view_as(index)  # (B, N, K)
    # the K candidate entries at p̂'s columns: L̂[i, j] (moved out of the old entries that hold column j,
    # which scatter to place m < K; the others to the spare slot K) decayed, plus w[i]·p̂[j]
    moved = value.new_zeros(batch, slots, k + 1).scatter_add(-1, old_place, value)[..., :k]  # (B, N, K)
    w_i = w.unsqueeze(-1)  # (B, N, 1)
    w_p = w.gather(-1, p_index).unsqueeze(1)  # (B, 1, K): w[j] at p̂'s columns
    at_p = (1 - w_i - w_p) * moved + w_i * p_values.unsqueeze(1)  # (B, N, K)
    rows = torch.arange(slots, device=index.device).view(1, slots, 1)  # (1, N, 1)
    # L̃[i, i] = 0: a slot does not follow itself. Only the entries at p̂'s columns can hold the
    # diagonal with a nonzero value: an old entry at column i (from the initial columns 0 … K−1) is 0
    at_p = at_p.masked_fill(p_index.unsqueeze(1) == rows, 0)  # (B, N, K)
    # the old entries off p̂'s support, decayed: (1 − w[i] − w[j])·L̂[i, j]
    kept = (1 - w_i - w.gather(-1, columns).view_as(value)) * value  # (B, N, K)
    candidates = torch.cat([index, p_index.unsqueeze(1).expand(batch, slots, k)], -1)  # (B, N, 2K) columns
    values = torch.cat([kept, at_p], -1)  # (B, N, 2K)
    # old entries on p̂'s support moved into `at_p`: never chosen, so the columns of a row stay distinct
    # (the K entries at p̂'s columns rank ≥ 0, so K distinct columns are always there to choose)
    rank = torch.cat([kept.detach().masked_fill(old_place < k, -1), at_p.detach()], -1)  # (B, N, 2K)
    chosen = rank.topk(k, dim=-1).indices  # (B, N, K)
    new_state = SparseLinkageState(candidates.gather(-1, chosen), values.gather(-1, chosen),
                                   (1 - w.sum(-1, keepdim=True)) * precedence + w)
    forward, backward = _sparse_directional_weights(new_state.index, new_state.value, read_weights)
    return new_state, forward, backward


def _sparse_directional_weights(index: torch.Tensor, value: torch.Tensor,
                                read_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f = L̂ w^r and b = L̂ᵀ w^r for the sparse L̂ of `index` (B, N, K), `value` (B, N, K)."""
    batch, slots, k = index.shape
    heads = read_weights.shape[1]
    columns = index.flatten(1).unsqueeze(1).expand(batch, heads, slots * k)  # (B, R, N·K)
    at_columns = read_weights.gather(-1, columns).view(batch, heads, slots, k)  # (B, R, N, K): w^r[j]
    forward = (at_columns * value.unsqueeze(1)).sum(-1)  # (B, R, N): f[i] = Σ_k L̂[i, j_k]·w^r[j_k]
    from_rows = (value.unsqueeze(1) * read_weights.unsqueeze(-1)).flatten(2)  # (B, R, N·K): L̂[i, j_k]·w^r[i]
    backward = torch.zeros_like(read_weights).scatter_add(-1, columns, from_rows)  # (B, R, N): b[j] = Σ_i …
    return forward, backward


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
