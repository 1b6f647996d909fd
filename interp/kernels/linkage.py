"""The DNC's temporal linkage step fused with its directional reads (Graves et al. 2016, Methods
"Temporal memory linkage"): the O(N²) per step that dominates a DNC.

Notation (docs/NOTATION.md): B batch, N memory slots, R read heads. With L = L_{t−1},
p = p_{t−1}, w = w^w_t and r = w^r_{t−1} (one row per read head):

    L_t[i, j] = (1 − w[i] − w[j])·L[i, j] + w[i]·p[j],   L_t[i, i] = 0
    p_t       = (1 − Σ_i w[i])·p + w
    f_t       = L_t r,      b_t = L_tᵀ r                          (per head)

the same function as `diffvm.memory.linkage.update_linkage` followed by `directional_weights`
(the tests check it). One step reads L_{t−1} and writes L_t once; f and b are accumulated from
the tile of L_t while it is in registers (Triton) or computed from L_t by two matrix products
(the reference).

Backward: with G = ∂ℓ/∂L_t + Σ_h (∂ℓ/∂f_h) r_hᵀ + r_h (∂ℓ/∂b_h)ᵀ off the diagonal (L_t's
diagonal is the constant 0),

    ∂ℓ/∂L[i, j] = G[i, j]·(1 − w[i] − w[j])
    ∂ℓ/∂w[k]    = Σ_j G[k, j]·(p[j] − L[k, j]) − Σ_i G[i, k]·L[i, k]
    ∂ℓ/∂p[j]    = Σ_i G[i, j]·w[i]
    ∂ℓ/∂r_h     = (∂ℓ/∂f_h)ᵀ L_t + (∂ℓ/∂b_h)ᵀ L_tᵀ

What a BPTT through T steps keeps (the choice this module makes): the op saves its inputs only,
L_{t−1}, w, p and r, never L_t or any other N×N temporary; the backward rebuilds what it needs of
L_t from them (the Triton kernel recomputes each tile of L_t; the reference expands L_t r in
products of L_{t−1} with vectors). L_{t−1} is the previous step's output, a tensor that exists
anyway, so the saved state costs one (B, N, N) link matrix per step, B·N²·4 bytes in float32
(32·1024²·4 = 128 MiB at B = 32, N = 1024), plus O(B·R·N) vectors. Less is not possible from
this op alone: L_{t−1} cannot be recovered from L_t (a one-hot write to slot i sets row i of L_t
to p and column i to 0, erasing what both held; a soft one divides by 1 − w[i] − w[j], which can
be near 0), so storing fewer link matrices means recomputing steps forward from a stored one
(checkpointing segments of the episode: about 2·√T matrices instead of T) or the sparse top-K
link matrix of Graves et al. 2016 (Methods) and Rae et al. 2016, which keeps (B, N, K) entries
(`diffvm.memory.linkage.sparse_linkage_step`, `DNCMemory(link_top_k=K)`).

`linkage_step` is the entry point; `link_step_reference` is the plain-PyTorch forward (the test
oracle, through autograd, and the benchmark baseline). The op `diffvm::link_step` and its
backward `diffvm::link_step_backward` are `torch.library.custom_op`s, so
`torch.compile(fullgraph=True)` traces through them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, use_triton

__all__ = ["link_step_reference", "linkage_step"]


def link_step_reference(link: Tensor, write_weights: Tensor, precedence: Tensor,
                        read_weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """L_t, f_t and b_t in plain PyTorch (module docstring), differentiable by autograd.

    L_t is computed as `diffvm.memory.linkage.update_linkage` computes it, by products with
    vectors in one new (B, N, N) tensor, so the two agree to the last bit.

    Args:
        link: (B, N, N) L_{t−1}.
        write_weights: (B, N) w^w_t.
        precedence: (B, N) p_{t−1}.
        read_weights: (B, R, N) w^r_{t−1}.
    Returns:
        L_t (B, N, N), forward f_t (B, R, N) and backward b_t (B, R, N).
    """
    w = write_weights
    new_link = link * (1 - w.unsqueeze(-1))  # (B, N, N): (1 − w[i])·L[i, j]
    new_link.addcmul_(link, w.unsqueeze(-2), value=-1)  # − w[j]·L[i, j]
    new_link.baddbmm_(w.unsqueeze(-1), precedence.unsqueeze(-2))  # + w[i]·p[j]
    new_link.diagonal(dim1=-2, dim2=-1).zero_()  # L_t[i, i] = 0: a slot does not follow itself
    forward = torch.matmul(read_weights, new_link.transpose(-2, -1))  # (B, R, N): f[i] = Σ_j L_t[i, j]·r[j]
    backward = torch.matmul(read_weights, new_link)  # (B, R, N): b[j] = Σ_i L_t[i, j]·r[i]
    return new_link, forward, backward


def _link_step_backward_reference(grad_link: Tensor, grad_forward: Tensor, grad_backward: Tensor, link: Tensor,
                                  w: Tensor, p: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The backward of the module docstring in PyTorch, from the step's inputs only."""
    # G = ∂ℓ/∂L_t + Σ_h gf_h r_hᵀ + r_h gb_h ᵀ, one batched product with 2R inner terms
    left = torch.cat([grad_forward, r], dim=1).transpose(-2, -1)  # (B, N, 2R)
    g = torch.baddbmm(grad_link, left, torch.cat([r, grad_backward], dim=1))  # (B, N, N)
    g.diagonal(dim1=-2, dim2=-1).zero_()  # L_t's diagonal is constant
    grad_prev = g * (1 - w.unsqueeze(-1))  # (B, N, N)
    grad_prev.addcmul_(g, w.unsqueeze(-2), value=-1)  # G[i, j]·(1 − w[i] − w[j])
    grad_p = torch.bmm(w.unsqueeze(-2), g).squeeze(-2)  # (B, N): Σ_i G[i, j]·w[i]
    grad_w = torch.bmm(g, p.unsqueeze(-1)).squeeze(-1)  # (B, N): Σ_j G[k, j]·p[j]
    gl = g.mul_(link)  # (B, N, N) G ⊙ L, in g's storage (g is not needed after this)
    grad_w -= gl.sum(-1) + gl.sum(-2)
    # ∂ℓ/∂r = gf·L_t + gb·L_tᵀ with L_t expanded in L_{t−1} (module docstring), so that no N×N L_t
    # is rebuilt: two reads of L against 2R vectors each, and a correction for the diagonal that
    # L_t has zeroed, d[j] = (1 − 2w[j])·L[j, j] + w[j]·p[j]
    gf, gb, wv, pv = grad_forward, grad_backward, w.unsqueeze(-2), p.unsqueeze(-2)  # (B, R, N) ×2, (B, 1, N) ×2
    through_f = torch.bmm(torch.cat([gf * (1 - wv), gf], dim=1), link)  # (B, 2R, N): Σ_i (·)[i]·L[i, j]
    through_b = torch.bmm(torch.cat([gb, gb * wv], dim=1), link.transpose(-2, -1))  # (B, 2R, N): Σ_k L[j, k]·(·)[k]
    (f_kept, f_lost), (b_kept, b_lost) = through_f.chunk(2, dim=1), through_b.chunk(2, dim=1)  # (B, R, N) each
    diagonal = (1 - 2 * wv) * link.diagonal(dim1=-2, dim2=-1).unsqueeze(-2) + wv * pv  # (B, 1, N)
    grad_r = (f_kept - wv * f_lost + pv * (gf * wv).sum(-1, keepdim=True)
              + (1 - wv) * b_kept - b_lost + wv * (gb * pv).sum(-1, keepdim=True)
              - (gf + gb) * diagonal)  # (B, R, N)
    return grad_prev, grad_w, grad_p, grad_r


@torch.library.custom_op("diffvm::link_step", mutates_args=())
def _link_step(link: Tensor, write_weights: Tensor, precedence: Tensor, read_weights: Tensor,
               triton: bool) -> tuple[Tensor, Tensor, Tensor]:
    """L_t, f_t, b_t by the Triton kernel (`triton`) or the reference."""
    if triton:
        from diffvm.interp.kernels import _linkage_triton  # imported on first use: Triton is optional

        return _linkage_triton.link_forward(link, write_weights, precedence, read_weights)
    return link_step_reference(link, write_weights, precedence, read_weights)


@_link_step.register_fake
def _(link, write_weights, precedence, read_weights, triton):
    return torch.empty_like(link), torch.empty_like(read_weights), torch.empty_like(read_weights)


@torch.library.custom_op("diffvm::link_step_backward", mutates_args=())
def _link_step_backward(grad_link: Tensor, grad_forward: Tensor, grad_backward: Tensor, link: Tensor,
                        write_weights: Tensor, precedence: Tensor, read_weights: Tensor,
                        triton: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂(L_{t−1}, w, p, r) from ∂ℓ/∂(L_t, f, b) and the step's inputs."""
    if triton:
        from diffvm.interp.kernels import _linkage_triton

        return _linkage_triton.link_backward(grad_link, grad_forward, grad_backward, link, write_weights,
                                             precedence, read_weights)
    return _link_step_backward_reference(grad_link, grad_forward, grad_backward, link, write_weights, precedence,
                                         read_weights)


@_link_step_backward.register_fake
def _(grad_link, grad_forward, grad_backward, link, write_weights, precedence, read_weights, triton):
    return (torch.empty_like(link), torch.empty_like(write_weights), torch.empty_like(precedence),
            torch.empty_like(read_weights))


def _setup_context(ctx, inputs, output):
    link, write_weights, precedence, read_weights, triton = inputs
    ctx.save_for_backward(link, write_weights, precedence, read_weights)  # the inputs only (module docstring)
    ctx.triton = triton


def _backward(ctx, grad_link, grad_forward, grad_backward):
    grads = _link_step_backward(grad_link, grad_forward, grad_backward, *ctx.saved_tensors, ctx.triton)
    return (*grads, None)


_link_step.register_autograd(_backward, setup_context=_setup_context)



def linkage_step(state, write_weights: Tensor, read_weights: Tensor, *, impl: str = "auto"):
    """One step of temporal linkage and the directional weightings it gives the read heads.

    A drop-in for `update_linkage` followed by `directional_weights` (diffvm.memory.linkage):

        linkage, forward, backward = linkage_step(state.linkage, write_weights, state.read_weights)

    Args:
        state: a NamedTuple with fields `link` (B, N, N) L_{t−1} and `precedence` (B, N) p_{t−1},
            such as `diffvm.memory.linkage.LinkageState`.
        write_weights: (B, N) w^w_t, summing to at most 1.
        read_weights: (B, R, N) w^r_{t−1}.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        `state` with L_t and p_t in place of L_{t−1} and p_{t−1}, the forward weightings f_t
        (B, R, N) and the backward weightings b_t (B, R, N).
    """
    link, precedence = state.link, state.precedence
    batch, slots = write_weights.shape[0], write_weights.shape[-1]
    expected = {"link": (batch, slots, slots), "precedence": (batch, slots), "write_weights": (batch, slots)}
    got = {"link": link.shape, "precedence": precedence.shape, "write_weights": write_weights.shape}
    if got != expected or read_weights.dim() != 3 or read_weights.shape[::2] != (batch, slots):
        raise ValueError(f"linkage_step: expected link (B, N, N), precedence (B, N), write_weights (B, N) and "
                         f"read_weights (B, R, N), got {dict(got, read_weights=read_weights.shape)}")
    check_floats("linkage_step", link=link, precedence=precedence, write_weights=write_weights,
                 read_weights=read_weights)
    triton = use_triton(impl, "linkage_step", link, write_weights, precedence, read_weights)
    new_link, forward, backward = _link_step(link, write_weights, precedence, read_weights, triton)
    new_precedence = (1 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights  # (B, N)
    return state._replace(link=new_link, precedence=new_precedence), forward, backward
