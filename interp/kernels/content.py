"""Content-based addressing fused into one kernel: cosine similarity, key strength and softmax over
the slots (Graves et al. 2014, eq. 5–6; Graves et al. 2016, Methods "Content-based addressing"),
with the key mask of Csordás & Schmidhuber 2019 (§3.1).

Notation (docs/NOTATION.md): B batch, N slots, W word width, H heads. For head h with key k,
strength β and mask m (m = 1 without a mask), and q = m ⊙ m:

    D[h, n] = Σ_w q[w]·k[w]·M[n, w] / (‖k‖_q · ‖M[n]‖_q),   ‖x‖_q = sqrt(Σ_w q[w]·x[w]² + ε)
    y[h, n] = exp(β·D[h, n]) / Σ_n' exp(β·D[h, n'])

the cosine of the masked key k ⊙ m and the masked row M[n] ⊙ m, written with q so that the masked
memory (B, H, N, W) is never built: the same function as `diffvm.memory.addressing.content_weights`
(the tests check it), with the norms guarded by `NORM_EPS` as there.

Backward, with z = β·D, ∂ℓ/∂z = y ⊙ (∂ℓ/∂y − Σ_n y·∂ℓ/∂y), a = β·∂ℓ/∂z / (‖k‖‖M[n]‖) and
e = −β·∂ℓ/∂z·D / ‖M[n]‖²:

    ∂ℓ/∂β    = Σ_n ∂ℓ/∂z·D
    ∂ℓ/∂M[n] = Σ_h a·(q ⊙ k) + e·(q ⊙ M[n])
    ∂ℓ/∂k    = q ⊙ (Σ_n a·M[n] − β·(∂ℓ/∂β)·k / ‖k‖²)
    ∂ℓ/∂q    = k ⊙ Σ_n a·M[n] − β·(∂ℓ/∂β)·k ⊙ k / (2‖k‖²) + Σ_n e·M[n] ⊙ M[n] / 2

The op saves its inputs and its output y (B, H, N); D is recomputed in the backward.

`content_weights` is the entry point; `content_weights_reference` is the plain-PyTorch function
(the test oracle, through autograd, and the benchmark baseline). The op `diffvm::content_weights`
and its backward `diffvm::content_weights_backward` are `torch.library.custom_op`s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, use_triton

__all__ = ["NORM_EPS", "content_weights", "content_weights_reference"]

# Added under the square root of every norm, as `diffvm.memory.addressing.NORM_EPS` (the tests
# check they are equal): a zero key or memory row has norm ~1e-3, similarity 0, finite gradients.
NORM_EPS = 1e-6


def _similarity(memory: Tensor, keys: Tensor, mask_sq: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """D (B, H, N), ‖k‖_q (B, H, 1) and ‖M[n]‖_q ((B, 1, N) without a mask, else (B, H, N))."""
    if mask_sq is None:
        dot = torch.einsum("bhw,bnw->bhn", keys, memory)  # (B, H, N)
        key_norm = torch.sqrt((keys * keys).sum(-1) + NORM_EPS).unsqueeze(-1)  # (B, H, 1)
        mem_norm = torch.sqrt((memory * memory).sum(-1) + NORM_EPS).unsqueeze(1)  # (B, 1, N)
    else:
        masked_keys = keys * mask_sq  # (B, H, W) q ⊙ k
        dot = torch.einsum("bhw,bnw->bhn", masked_keys, memory)  # (B, H, N)
        key_norm = torch.sqrt((keys * masked_keys).sum(-1) + NORM_EPS).unsqueeze(-1)  # (B, H, 1)
        mem_norm = torch.sqrt(torch.einsum("bhw,bnw->bhn", mask_sq, memory * memory) + NORM_EPS)  # (B, H, N)
    return dot / (key_norm * mem_norm), key_norm, mem_norm


def content_weights_reference(memory: Tensor, keys: Tensor, strengths: Tensor, mask: Tensor | None = None) -> Tensor:
    """C(M, k, β, m) in plain PyTorch (module docstring), differentiable by autograd.

    Args:
        memory: (B, N, W) M.
        keys: (B, H, W) k.
        strengths: (B, H) β ≥ 0.
        mask: (B, H, W) m in [0, 1], or None.
    Returns:
        (B, H, N), each head's weighting on the simplex.
    """
    similarity, _, _ = _similarity(memory, keys, None if mask is None else mask * mask)  # (B, H, N)
    # softmax subtracts the largest term: a huge β saturates it without overflow
    return torch.softmax(strengths.unsqueeze(-1) * similarity, dim=-1)  # (B, H, N)


def _content_backward_reference(grad: Tensor, weights: Tensor, memory: Tensor, keys: Tensor, strengths: Tensor,
                                mask_sq: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The backward of the module docstring in PyTorch; ∂ℓ/∂q is empty without a mask."""
    similarity, key_norm, mem_norm = _similarity(memory, keys, mask_sq)  # (B, H, N), (B, H, 1), (B, ·, N)
    grad_z = weights * (grad - (weights * grad).sum(-1, keepdim=True))  # (B, H, N) through the softmax
    grad_strengths = (grad_z * similarity).sum(-1)  # (B, H)
    grad_sim = strengths.unsqueeze(-1) * grad_z  # (B, H, N)
    a = grad_sim / (key_norm * mem_norm)  # (B, H, N) through the dot product
    e = -grad_sim * similarity / (mem_norm * mem_norm)  # (B, H, N) through ‖M[n]‖, divided by ‖M[n]‖
    along = torch.bmm(a, memory)  # (B, H, W): Σ_n a·M[n]
    through_key_norm = -(strengths * grad_strengths).unsqueeze(-1) / (key_norm * key_norm)  # (B, H, 1)
    if mask_sq is None:
        grad_memory = torch.bmm(a.transpose(-2, -1), keys) + memory * e.sum(1).unsqueeze(-1)  # (B, N, W)
        return grad_memory, along + through_key_norm * keys, grad_strengths, keys.new_empty(0)
    grad_memory = torch.bmm(a.transpose(-2, -1), mask_sq * keys)  # (B, N, W)
    grad_memory += memory * torch.bmm(e.transpose(-2, -1), mask_sq)
    grad_keys = mask_sq * (along + through_key_norm * keys)  # (B, H, W)
    grad_mask_sq = keys * along + through_key_norm * keys * keys / 2 + torch.bmm(e, memory * memory) / 2  # (B, H, W)
    return grad_memory, grad_keys, grad_strengths, grad_mask_sq


@torch.library.custom_op("diffvm::content_weights", mutates_args=())
def _content(memory: Tensor, keys: Tensor, strengths: Tensor, mask_sq: Tensor | None, triton: bool) -> Tensor:
    """y (B, H, N) by the Triton kernel (`triton`) or the reference; `mask_sq` is q = m ⊙ m."""
    if triton:
        from diffvm.interp.kernels import _content_triton  # imported on first use: Triton is optional

        return _content_triton.content_forward(memory, keys, strengths, mask_sq, NORM_EPS)
    similarity, _, _ = _similarity(memory, keys, mask_sq)  # (B, H, N)
    return torch.softmax(strengths.unsqueeze(-1) * similarity, dim=-1)  # (B, H, N)


@_content.register_fake
def _(memory, keys, strengths, mask_sq, triton):
    return memory.new_empty(keys.shape[0], keys.shape[1], memory.shape[1])


@torch.library.custom_op("diffvm::content_weights_backward", mutates_args=())
def _content_backward(grad: Tensor, weights: Tensor, memory: Tensor, keys: Tensor, strengths: Tensor,
                      mask_sq: Tensor | None, triton: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂(M, k, β, q) from ∂ℓ/∂y, y and the inputs; ∂ℓ/∂q is empty without a mask."""
    if triton:
        from diffvm.interp.kernels import _content_triton

        return _content_triton.content_backward(grad, weights, memory, keys, strengths, mask_sq, NORM_EPS)
    return _content_backward_reference(grad, weights, memory, keys, strengths, mask_sq)


@_content_backward.register_fake
def _(grad, weights, memory, keys, strengths, mask_sq, triton):
    grad_mask_sq = keys.new_empty(0) if mask_sq is None else torch.empty_like(mask_sq)
    return torch.empty_like(memory), torch.empty_like(keys), torch.empty_like(strengths), grad_mask_sq


def _setup_context(ctx, inputs, output):
    memory, keys, strengths, mask_sq, triton = inputs
    ctx.save_for_backward(output, memory, keys, strengths, mask_sq)
    ctx.triton = triton


def _backward(ctx, grad):
    weights, memory, keys, strengths, mask_sq = ctx.saved_tensors
    grad_memory, grad_keys, grad_strengths, grad_mask_sq = _content_backward(
        grad, weights, memory, keys, strengths, mask_sq, ctx.triton)
    return grad_memory, grad_keys, grad_strengths, None if mask_sq is None else grad_mask_sq, None


_content.register_autograd(_backward, setup_context=_setup_context)


def content_weights(memory: Tensor, keys: Tensor, strengths: Tensor, mask: Tensor | None = None, *,
                    impl: str = "auto") -> Tensor:
    """C(M, k, β, m): a softmax over slots of the strength-scaled (masked) cosine similarity.

    A drop-in for `diffvm.memory.addressing.content_weights`, with the same arguments.

    Args:
        memory: (B, N, W) M.
        keys: (B, H, W) k, one per head.
        strengths: (B, H) β ≥ 0; large β approaches argmax.
        mask: (B, H, W) m in [0, 1], or None: compare only the masked parts of key and rows.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        (B, H, N) weightings, each on the simplex.
    """
    if memory.dim() != 3 or keys.dim() != 3 or keys.shape[::2] != memory.shape[::2] \
            or strengths.shape != keys.shape[:2] or (mask is not None and mask.shape != keys.shape):
        shapes = {"memory": memory.shape, "keys": keys.shape, "strengths": strengths.shape,
                  "mask": None if mask is None else mask.shape}
        raise ValueError(f"content_weights: expected memory (B, N, W), keys (B, H, W), strengths (B, H) and mask "
                         f"(B, H, W) or None, got {shapes}")
    tensors = {"memory": memory, "keys": keys, "strengths": strengths} | ({} if mask is None else {"mask": mask})
    check_floats("content_weights", **tensors)
    triton = use_triton(impl, "content_weights", *tensors.values())
    return _content(memory, keys, strengths, None if mask is None else mask * mask, triton)
