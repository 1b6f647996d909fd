"""One step of the neural stack or queue's strengths and its read, fused (Grefenstette et al. 2015,
"Learning to Transduce with Unbounded Memory", eq. 1–5).

Notation (docs/NOTATION.md): B batch, C capacity (rows), W word width; the paper's s strengths,
u pop, d push, V values, r read. Rows are ordered bottom (row 0) to top; `end` is where the
structure pops and reads: "top" for the stack, "bottom" for the queue. With β(x)[i] the strength
lying between row i and `end` (Σ_{j>i} x[j] for the top, Σ_{j<i} x[j] for the bottom), one step
after V_t has received the pushed value in row t:

    s'[i]  = max(0, s[i] − max(0, u − β(s)[i]))               pop (eq. 2, 4)
    s_t    = s' with s_t[t] = d                                 push (eq. 1)
    w[i]   = min(s_t[i], max(0, 1 − β(s_t)[i]))                 the unit of strength nearest `end`
    r      = Σ_i w[i]·V_t[i]                                    read (eq. 3, 5)

the same function as `pop`, the push of `_push` and `read` in `diffvm.memory.neural_stack` (the
tests check it, to the bit for the reference). The kinks follow that module and the paper's
footnote 1: max(0, x) has derivative 0 at x = 0, and min(a, b) sends the gradient to a where
a = b. The deque pops and reads at both ends and is not covered here.

Backward: the adjoint of β for one end is β for the other end (Σ_{j>i} ↔ Σ_{i<j}), so the
backward runs the same two scans as the forward, in reverse order. The op saves its inputs;
everything else is O(B·C) and recomputed.

`strength_step` is the entry point; `strength_step_reference` is the plain-PyTorch function (the
test oracle and the benchmark baseline). The op `diffvm::strength_step` and its backward
`diffvm::strength_step_backward` are `torch.library.custom_op`s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, eager_reference, use_triton

__all__ = ["ENDS", "strength_step", "strength_step_reference"]

ENDS = ("top", "bottom")


def _beyond(x: Tensor, top: bool) -> Tensor:
    """β(x): Σ_{j>i} x[j] (top) or Σ_{j<i} x[j] (bottom) along the last dimension, (B, C) -> (B, C).
    Shifted rather than `cumsum − x`, as in diffvm.memory.neural_stack, so that exact values stay exact."""
    if top:
        return F.pad(x.flip(-1).cumsum(-1)[..., :-1], (1, 0)).flip(-1)  # (B, C)
    return F.pad(x.cumsum(-1)[..., :-1], (1, 0))  # (B, C)


def _forward_parts(strengths: Tensor, pop: Tensor, push: Tensor, row: int, top: bool):
    """The step's intermediate (B, C) tensors: max(0, u − β(s)), s', s_t, max(0, 1 − β(s_t)), w."""
    left_to_remove = F.relu(pop.unsqueeze(-1) - _beyond(strengths, top))  # (B, C)
    popped = F.relu(strengths - left_to_remove)  # (B, C) s'
    index = torch.tensor([row], device=strengths.device)
    new_strengths = popped.index_copy(1, index, push.unsqueeze(1))  # (B, C) s_t
    room = F.relu(1 - _beyond(new_strengths, top))  # (B, C)
    weights = torch.where(new_strengths <= room, new_strengths, room)  # (B, C) min(s_t, room), left on ties
    return left_to_remove, popped, new_strengths, room, weights


def strength_step_reference(strengths: Tensor, values: Tensor, pop: Tensor, push: Tensor, row: int,
                            end: str) -> tuple[Tensor, Tensor]:
    """s_t and r in plain PyTorch (module docstring), differentiable by autograd.

    Args:
        strengths: (B, C) s_{t−1} ≥ 0.
        values: (B, C, W) V_t, row `row` already holding the pushed value.
        pop: (B,) u in [0, 1].
        push: (B,) d in [0, 1].
        row: t, the row the push writes.
        end: "top" (stack) or "bottom" (queue).
    Returns:
        s_t (B, C) and the read r (B, W).
    """
    *_, new_strengths, _, weights = _forward_parts(strengths, pop, push, row, end == "top")
    return new_strengths, torch.einsum("bn,bnw->bw", weights, values)  # (B, C), (B, W)


def _strength_step_backward_reference(grad_strengths: Tensor, grad_read: Tensor, strengths: Tensor, values: Tensor,
                                      pop: Tensor, push: Tensor, row: int,
                                      top: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂(s_{t−1}, V_t, u, d) by hand (module docstring), from the step's inputs."""
    left_to_remove, popped, new_strengths, room, weights = _forward_parts(strengths, pop, push, row, top)
    grad_weights = torch.einsum("bw,bnw->bn", grad_read, values)  # (B, C)
    grad_values = weights.unsqueeze(-1) * grad_read.unsqueeze(1)  # (B, C, W)
    take = new_strengths <= room
    grad_room = torch.where(take, 0.0, grad_weights)  # (B, C)
    grad_beyond = torch.where(room > 0, -grad_room, 0.0)  # (B, C) through max(0, 1 − β(s_t))
    grad_new = grad_strengths + torch.where(take, grad_weights, 0.0) + _beyond(grad_beyond, not top)  # (B, C)
    grad_push = grad_new[:, row].clone()  # (B,)
    grad_new[:, row] = 0  # s_t[t] = d does not depend on s'[t]
    grad_diff = torch.where(popped > 0, grad_new, 0.0)  # (B, C) through max(0, s − ·)
    grad_x = torch.where(left_to_remove > 0, -grad_diff, 0.0)  # (B, C) through max(0, u − β(s))
    grad_prev = grad_diff + _beyond(-grad_x, not top)  # (B, C)
    return grad_prev, grad_values, grad_x.sum(-1), grad_push


@torch.library.custom_op("diffvm::strength_step", mutates_args=())
def _strength_step(strengths: Tensor, values: Tensor, pop: Tensor, push: Tensor, row: int, top: bool,
                   triton: bool) -> tuple[Tensor, Tensor]:
    """s_t (B, C) and r (B, W) by the Triton kernel (`triton`) or the reference."""
    if triton:
        from diffvm.interp.kernels import _stack_triton  # imported on first use: Triton is optional

        return _stack_triton.strength_forward(strengths, values, pop, push, row, top)
    return strength_step_reference(strengths, values, pop, push, row, "top" if top else "bottom")


@_strength_step.register_fake
def _(strengths, values, pop, push, row, top, triton):
    return torch.empty_like(strengths), values.new_empty(values.shape[0], values.shape[2])


@torch.library.custom_op("diffvm::strength_step_backward", mutates_args=())
def _strength_step_backward(grad_strengths: Tensor, grad_read: Tensor, strengths: Tensor, values: Tensor,
                            pop: Tensor, push: Tensor, row: int, top: bool,
                            triton: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂s_{t−1} (B, C), ∂ℓ/∂V_t (B, C, W), ∂ℓ/∂u (B,), ∂ℓ/∂d (B,)."""
    if triton:
        from diffvm.interp.kernels import _stack_triton

        return _stack_triton.strength_backward(grad_strengths, grad_read, strengths, values, pop, push, row, top)
    return _strength_step_backward_reference(grad_strengths, grad_read, strengths, values, pop, push, row, top)


@_strength_step_backward.register_fake
def _(grad_strengths, grad_read, strengths, values, pop, push, row, top, triton):
    return torch.empty_like(strengths), torch.empty_like(values), torch.empty_like(pop), torch.empty_like(push)


def _setup_context(ctx, inputs, output):
    strengths, values, pop, push, row, top, triton = inputs
    ctx.save_for_backward(strengths, values, pop, push)
    ctx.row, ctx.top, ctx.triton = row, top, triton


def _backward(ctx, grad_strengths, grad_read):
    grad_prev, grad_values, grad_pop, grad_push = _strength_step_backward(
        grad_strengths, grad_read, *ctx.saved_tensors, ctx.row, ctx.top, ctx.triton)
    return grad_prev, grad_values, grad_pop, grad_push, None, None, None


_strength_step.register_autograd(_backward, setup_context=_setup_context)


def strength_step(strengths: Tensor, values: Tensor, pop: Tensor, push: Tensor, row: int, *, end,
                  impl: str = "auto") -> tuple[Tensor, Tensor]:
    """Pop u from `end`, push d into row t, read from `end` (module docstring).

    A drop-in for `pop`, the push of the strengths and `read` in `diffvm.memory.neural_stack`
    (the values' push, `values.index_copy`, stays with the caller).

    Args:
        strengths: (B, C) s_{t−1} ≥ 0.
        values: (B, C, W) V_t, row `row` already holding the pushed value.
        pop: (B,) u in [0, 1].
        push: (B,) d in [0, 1].
        row: t, 0 ≤ t < C, the row the push writes.
        end: "top" (stack) or "bottom" (queue), or an `End` of diffvm.memory.neural_stack.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        s_t (B, C) and the read r (B, W).
    """
    end = getattr(end, "value", end)
    if end not in ENDS:
        raise ValueError(f"strength_step: end must be one of {ENDS}, got {end!r}")
    batch, capacity = strengths.shape if strengths.dim() == 2 else (None, None)
    if batch is None or values.dim() != 3 or values.shape[:2] != (batch, capacity) \
            or pop.shape != (batch,) or push.shape != (batch,):
        raise ValueError(f"strength_step: expected strengths (B, C), values (B, C, W), pop (B,) and push (B,), got "
                         f"{tuple(strengths.shape)}, {tuple(values.shape)}, {tuple(pop.shape)}, {tuple(push.shape)}")
    if not 0 <= row < capacity:
        raise ValueError(f"strength_step: row must be in [0, C) = [0, {capacity}), got {row}")
    check_floats("strength_step", strengths=strengths, values=values, pop=pop, push=push)
    if eager_reference(impl, strengths, values, pop, push):
        return strength_step_reference(strengths, values, pop, push, row, end)
    triton = use_triton(impl, "strength_step", strengths, values, pop, push)
    return _strength_step(strengths, values, pop, push, row, end == "top", triton)
