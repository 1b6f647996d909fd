"""One ponder step of Adaptive Computation Time's bookkeeping and mean field, fused (Graves 2016,
"Adaptive Computation Time for Recurrent Neural Networks", eq. 5–9).

Notation (docs/NOTATION.md): B batch; each accumulated tensor ("leaf") is (B, …), flattened here
to D elements. At ponder step n, with h^n the step's halting unit, c = Σ_{j<n} h^j the halting sum
so far, R the remainder so far, `running` the examples not halted before n, and ε's threshold
1 − ε:

    h̄       = h^n where running, else 0          (a halted example's h^n may be anything, NaN too)
    halting = running ∧ (c + h̄ ≥ 1 − ε  ∨  n = M)                         (N(t), eq. 5)
    p^n     = 1 − c where halting, else h̄                                 (eq. 6–7: p^N = R)
    c'      = c + h̄
    R'      = 1 − c where halting, else R
    y'      = y + p^n · (y^n where running, else 0)      for every leaf     (eq. 8–9)

the same function as the loop body of `diffvm.interp.halting.act` before it called this op (the
tests check it, to the bit for the reference); `act` now runs it once per ponder step. Halted
examples are selected away, never multiplied by 0, so a NaN in their y^n reaches neither y' nor a
gradient.

Backward, with ∂ℓ/∂p gathering Σ_leaves Σ_d ∂ℓ/∂y'·(y^n where running):

    ∂ℓ/∂y = ∂ℓ/∂y',   ∂ℓ/∂y^n = p^n·∂ℓ/∂y' where running, else 0
    ∂ℓ/∂h^n = ∂ℓ/∂p where running ∧ ¬halting, + ∂ℓ/∂c' where running
    ∂ℓ/∂c = ∂ℓ/∂c' − (∂ℓ/∂p + ∂ℓ/∂R') where halting,   ∂ℓ/∂R = ∂ℓ/∂R' where ¬halting

The halting test is discrete and carries no gradient (h^N enters only the choice of N). The op
saves its inputs; p^n and the halting mask are recomputed in the backward.

`act_accumulate` is the entry point; `act_accumulate_reference` is the plain-PyTorch function (the
test oracle and the benchmark baseline). The op `diffvm::act_accumulate` and its backward
`diffvm::act_accumulate_backward` are `torch.library.custom_op`s.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, eager_reference, use_triton

__all__ = ["ACTAccumulation", "act_accumulate", "act_accumulate_reference"]


class ACTAccumulation(NamedTuple):
    """One ponder step's result (module docstring).

    Attributes:
        weight: (B,) p^n.
        halting: (B,) bool, the examples halting at this step.
        cumulative: (B,) c' = Σ_{j≤n} h^j over the running examples.
        remainder: (B,) R'.
        totals: the leaves y' = y + p^n·y^n, each shaped as its y.
    """

    weight: Tensor
    halting: Tensor
    cumulative: Tensor
    remainder: Tensor
    totals: list[Tensor]


def _per_example(x: Tensor, leaf: Tensor) -> Tensor:
    """(B,) shaped to broadcast over a batch-first leaf (B, …)."""
    return x.reshape(x.shape[0], *([1] * (leaf.dim() - 1)))


def _halting(halt: Tensor, cumulative: Tensor, running: Tensor, last: bool,
             threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """h̄, the halting mask and p^n, as `diffvm.interp.halting.act` computes them."""
    halt = torch.where(running, halt, 0.0)  # h̄: select, never multiply (NaN)
    halting = running & ((cumulative + halt >= threshold) | last)
    return halt, halting, torch.where(halting, 1.0 - cumulative, halt)


def act_accumulate_reference(halt: Tensor, cumulative: Tensor, remainder: Tensor, running: Tensor,
                             totals: list[Tensor], values: list[Tensor], last: bool,
                             threshold: float) -> ACTAccumulation:
    """One ponder step in plain PyTorch (module docstring), differentiable by autograd.

    Args:
        halt: (B,) h^n.
        cumulative: (B,) c = Σ_{j<n} h^j.
        remainder: (B,) R so far.
        running: (B,) bool, the examples not halted before step n.
        totals: the leaves y accumulated so far, each (B, …).
        values: this step's leaves y^n, each shaped as its total.
        last: whether n = M, the cap.
        threshold: 1 − ε.
    Returns:
        an `ACTAccumulation`.
    """
    halt, halting, p = _halting(halt, cumulative, running, last, threshold)
    new_totals = [total + _per_example(p, y) * torch.where(_per_example(running, y), y, 0.0)
                  for total, y in zip(totals, values)]
    return ACTAccumulation(p, halting, cumulative + halt, torch.where(halting, 1.0 - cumulative, remainder),
                           new_totals)


def _act_backward_reference(grad_weight: Tensor, grad_cumulative: Tensor, grad_remainder: Tensor,
                            grad_totals: list[Tensor], halt: Tensor, cumulative: Tensor, running: Tensor,
                            values: list[Tensor], last: bool, threshold: float) -> tuple[Tensor, ...]:
    """∂ℓ/∂(h^n, c, R), ∂ℓ/∂y and ∂ℓ/∂y^n of every leaf by hand (module docstring)."""
    _, halting, p = _halting(halt, cumulative, running, last, threshold)
    grad_p = grad_weight
    grad_values = []
    for grad, y in zip(grad_totals, values):
        kept = _per_example(running, y)
        grad_p = grad_p + torch.where(kept, grad * y, 0.0).reshape(y.shape[0], -1).sum(1)  # (B,)
        grad_values.append(torch.where(kept, _per_example(p, y) * grad, 0.0))
    grad_halt = torch.where(running & ~halting, grad_p, 0.0) + torch.where(running, grad_cumulative, 0.0)
    grad_cum = grad_cumulative - torch.where(halting, grad_p + grad_remainder, 0.0)
    return grad_halt, grad_cum, torch.where(halting, 0.0, grad_remainder), grad_values


@torch.library.custom_op("diffvm::act_accumulate", mutates_args=())
def _act(halt: Tensor, cumulative: Tensor, remainder: Tensor, running: Tensor, totals: list[Tensor],
         values: list[Tensor], last: bool, threshold: float,
         triton: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
    """p^n, halting, c', R' (B,) and the leaves y' by the Triton kernel (`triton`) or the reference."""
    if triton:
        from diffvm.interp.kernels import _act_triton  # imported on first use: Triton is optional

        return _act_triton.act_forward(halt, cumulative, remainder, running, totals, values, last, threshold)
    return tuple(act_accumulate_reference(halt, cumulative, remainder, running, totals, values, last, threshold))


@_act.register_fake
def _(halt, cumulative, remainder, running, totals, values, last, threshold, triton):
    return (torch.empty_like(halt), torch.empty_like(running), torch.empty_like(halt), torch.empty_like(halt),
            [torch.empty_like(y, memory_format=torch.contiguous_format) for y in values])


@torch.library.custom_op("diffvm::act_accumulate_backward", mutates_args=())
def _act_backward(grad_weight: Tensor, grad_cumulative: Tensor, grad_remainder: Tensor, grad_totals: list[Tensor],
                  halt: Tensor, cumulative: Tensor, running: Tensor, values: list[Tensor], last: bool,
                  threshold: float, triton: bool) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """∂ℓ/∂h^n, ∂ℓ/∂c, ∂ℓ/∂R (B,) and ∂ℓ/∂y^n of every leaf (∂ℓ/∂y is ∂ℓ/∂y' itself)."""
    if triton:
        from diffvm.interp.kernels import _act_triton

        return _act_triton.act_backward(grad_weight, grad_cumulative, grad_remainder, grad_totals, halt, cumulative,
                                        running, values, last, threshold)
    return _act_backward_reference(grad_weight, grad_cumulative, grad_remainder, grad_totals, halt, cumulative,
                                   running, values, last, threshold)


@_act_backward.register_fake
def _(grad_weight, grad_cumulative, grad_remainder, grad_totals, halt, cumulative, running, values, last, threshold,
      triton):
    return (torch.empty_like(halt), torch.empty_like(halt), torch.empty_like(halt),
            [torch.empty_like(y, memory_format=torch.contiguous_format) for y in values])


def _setup_context(ctx, inputs, output):
    halt, cumulative, _, running, _, values, last, threshold, triton = inputs
    ctx.save_for_backward(halt, cumulative, running, *values)
    ctx.last, ctx.threshold, ctx.triton = last, threshold, triton


def _backward(ctx, grad_weight, _grad_halting, grad_cumulative, grad_remainder, grad_totals):
    halt, cumulative, running, *values = ctx.saved_tensors
    # an output nobody used may come back as None: its gradient is zero
    grad_weight, grad_cumulative, grad_remainder = (torch.zeros_like(halt) if g is None else g
                                                    for g in (grad_weight, grad_cumulative, grad_remainder))
    grad_totals = [torch.zeros_like(y) if g is None else g for g, y in zip(grad_totals, values)]
    grad_halt, grad_cum, grad_rem, grad_values = _act_backward(
        grad_weight, grad_cumulative, grad_remainder, grad_totals, halt, cumulative, running, values, ctx.last,
        ctx.threshold, ctx.triton)
    return grad_halt, grad_cum, grad_rem, None, list(grad_totals), grad_values, None, None, None


_act.register_autograd(_backward, setup_context=_setup_context)


def act_accumulate(halt: Tensor, cumulative: Tensor, remainder: Tensor, running: Tensor, totals: list[Tensor],
                   values: list[Tensor], *, last: bool, threshold: float, impl: str = "auto") -> ACTAccumulation:
    """ACT's update for one ponder step: halting decision, p^n, halting sum, remainder and the mean
    field Σ_n p^n y^n of every leaf (module docstring).

    What `diffvm.interp.halting.act` runs once per ponder step, every floating leaf of the output
    and the state in one call.

    Args:
        halt: (B,) h^n in [0, 1] (anything where `running` is false).
        cumulative: (B,) c = Σ_{j<n} h^j.
        remainder: (B,) R so far.
        running: (B,) bool, the examples not halted before step n.
        totals: the leaves y accumulated so far (zeros before step 1), each (B, …).
        values: this step's leaves y^n, each of its total's shape.
        last: whether n = M, the cap: every running example halts.
        threshold: 1 − ε.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        an `ACTAccumulation`.
    """
    batch = halt.shape[0] if halt.dim() == 1 else None
    if batch is None or cumulative.shape != (batch,) or remainder.shape != (batch,) or running.shape != (batch,) \
            or running.dtype != torch.bool:
        raise ValueError(f"act_accumulate: expected halt, cumulative, remainder (B,) and running (B,) bool, got "
                         f"{tuple(halt.shape)}, {tuple(cumulative.shape)}, {tuple(remainder.shape)}, "
                         f"{tuple(running.shape)} {running.dtype}")
    if len(totals) != len(values):
        raise ValueError(f"act_accumulate: {len(totals)} totals for {len(values)} values; expected one per value")
    for i, (total, y) in enumerate(zip(totals, values)):
        if y.dim() == 0 or y.shape[0] != batch or total.shape != y.shape:
            raise ValueError(f"act_accumulate: leaf {i} has total {tuple(total.shape)} and value {tuple(y.shape)}; "
                             f"expected one shape ({batch}, …)")
    leaves = {f"totals[{i}]": x for i, x in enumerate(totals)} | {f"values[{i}]": x for i, x in enumerate(values)}
    check_floats("act_accumulate", halt=halt, cumulative=cumulative, remainder=remainder, **leaves)
    if eager_reference(impl, halt, cumulative, remainder, *totals, *values):
        return act_accumulate_reference(halt, cumulative, remainder, running, list(totals), list(values), bool(last),
                                        float(threshold))
    triton = use_triton(impl, "act_accumulate", halt, cumulative, remainder, running, *totals, *values)
    return ACTAccumulation(*_act(halt, cumulative, remainder, running, list(totals), list(values), bool(last),
                                 float(threshold), triton))
