"""The soft step's merge of op results into a register, fused into one pass (ARCHITECTURE.md,
"The soft step", step 2):

    r = Σ_k w_k·y_k + (1 − Σ_k w_k)·r_prev

Notation (docs/NOTATION.md): B batch, K candidates (the ops producing the register's type);
values of any per-example shape, flattened here to D elements. The same function as
`diffvm.interp.types.ValueType.merge` (the tests check it, to the bit).

Backward, with g = ∂ℓ/∂r:

    ∂ℓ/∂y_k = w_k·g,   ∂ℓ/∂r_prev = (1 − Σ_k w_k)·g,   ∂ℓ/∂w_k = Σ_d g[d]·(y_k[d] − r_prev[d])

The op saves its inputs. With one-hot w the merge is exactly y_k (or r_prev when w = 0): every
other term is an exact 0·y, so the soft step stays equal to the hard one.

`merge_results` is the entry point; `merge_results_reference` is the plain-PyTorch function (the test oracle and
the benchmark baseline). The op `diffvm::merge` and its backward `diffvm::merge_backward` are
`torch.library.custom_op`s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, eager_reference, use_triton

__all__ = ["merge_results", "merge_results_reference"]


def merge_results_reference(weights: Tensor, candidates: Tensor, previous: Tensor) -> Tensor:
    """r = Σ_k w_k·y_k + (1 − Σ_k w_k)·r_prev in plain PyTorch, differentiable by autograd.

    Args:
        weights: (B, K) w, Σ_k w_k ≤ 1.
        candidates: (K, B, *shape) y_k.
        previous: (B, *shape) r_prev.
    Returns:
        (B, *shape).
    """
    extra = [1] * (previous.dim() - 1)
    w = weights.transpose(0, 1).reshape(*weights.shape[::-1], *extra)  # (K, B, 1, ...)
    kept = (1 - weights.sum(dim=1)).reshape(-1, *extra)  # (B, 1, ...)
    return (w * candidates).sum(dim=0) + kept * previous  # (B, *shape)


def _merge_backward_reference(grad: Tensor, weights: Tensor, candidates: Tensor,
                              previous: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The backward of the module docstring on flat values: grad (B, D), candidates (K, B, D)."""
    grad_candidates = weights.t().contiguous().unsqueeze(-1) * grad  # (K, B, D), laid out as the fake says
    grad_previous = (1 - weights.sum(dim=1, keepdim=True)) * grad  # (B, D)
    grad_weights = torch.einsum("kbd,bd->bk", candidates, grad) - (grad * previous).sum(-1, keepdim=True)  # (B, K)
    return grad_weights, grad_candidates, grad_previous


@torch.library.custom_op("diffvm::merge", mutates_args=())
def _merge(weights: Tensor, candidates: Tensor, previous: Tensor, triton: bool) -> Tensor:
    """r (B, D) from w (B, K), y (K, B, D), r_prev (B, D), by Triton (`triton`) or the reference."""
    if triton:
        from diffvm.interp.kernels import _merge_triton  # imported on first use: Triton is optional

        return _merge_triton.merge_forward(weights, candidates, previous)
    return merge_results_reference(weights, candidates, previous)


@_merge.register_fake
def _(weights, candidates, previous, triton):
    return torch.empty_like(previous)


@torch.library.custom_op("diffvm::merge_backward", mutates_args=())
def _merge_backward(grad: Tensor, weights: Tensor, candidates: Tensor, previous: Tensor,
                    triton: bool) -> tuple[Tensor, Tensor, Tensor]:
    """∂ℓ/∂w (B, K), ∂ℓ/∂y (K, B, D), ∂ℓ/∂r_prev (B, D) from ∂ℓ/∂r (B, D) and the inputs."""
    if triton:
        from diffvm.interp.kernels import _merge_triton

        return _merge_triton.merge_backward(grad, weights, candidates, previous)
    return _merge_backward_reference(grad, weights, candidates, previous)


@_merge_backward.register_fake
def _(grad, weights, candidates, previous, triton):
    return torch.empty_like(weights), torch.empty_like(candidates), torch.empty_like(previous)


def _setup_context(ctx, inputs, output):
    weights, candidates, previous, triton = inputs
    ctx.save_for_backward(weights, candidates, previous)
    ctx.triton = triton


def _backward(ctx, grad):
    return (*_merge_backward(grad, *ctx.saved_tensors, ctx.triton), None)


_merge.register_autograd(_backward, setup_context=_setup_context)


def merge_results(weights: Tensor, candidates: Tensor, previous: Tensor, *, impl: str = "auto") -> Tensor:
    """r = Σ_k w_k·y_k + (1 − Σ_k w_k)·r_prev, the soft register update.

    A drop-in for the body of `diffvm.interp.types.ValueType.merge`, with the same arguments.

    Args:
        weights: (B, K) w, the probability of each candidate, Σ_k w_k ≤ 1.
        candidates: (K, B, *shape) y_k.
        previous: (B, *shape) r_prev.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        (B, *shape).
    """
    batch, k = weights.shape if weights.dim() == 2 else (None, None)
    if batch is None or candidates.shape != (k, *previous.shape) or previous.dim() < 1 or previous.shape[0] != batch:
        raise ValueError(f"merge_results: expected weights (B, K), candidates (K, B, *shape) and previous "
                         f"(B, *shape), got {tuple(weights.shape)}, {tuple(candidates.shape)} and "
                         f"{tuple(previous.shape)}")
    mixed = len({weights.dtype, candidates.dtype, previous.dtype}) > 1  # e.g. float32 w with float64 values
    if eager_reference(impl, weights, candidates, previous) or (impl == "auto" and mixed):
        # PyTorch's promotion and rounding, as ValueType.merge always had; the kernel takes one dtype
        return merge_results_reference(weights, candidates, previous)
    check_floats("merge_results", weights=weights, candidates=candidates, previous=previous)
    triton = use_triton(impl, "merge_results", weights, candidates, previous)
    flat = _merge(weights, candidates.reshape(k, batch, -1), previous.reshape(batch, -1), triton)  # (B, D)
    return flat.reshape(previous.shape)
