"""Halting over ponder steps: Adaptive Computation Time and PonderNet.

A controller may run several machine steps ("ponder steps") per input step. Both schemes here
wrap any *step function*

    output, halt, state = step(n, state)       # n = 1, 2, … counts ponder steps

where `state` is a torch pytree (NamedTuple, tuple, list or dict of batch-first tensors, nested
freely; non-tensor leaves such as Python ints are allowed), `output` is (B, *O) y^n and `halt` is
(B,) the step's halting probability in [0, 1] (the caller applies the sigmoid). M = max_steps is
the most ponder steps one input step may take.

- `act` (Graves 2016, "Adaptive Computation Time for Recurrent Neural Networks"): halts at the
  first step whose cumulative halting reaches 1 − ε and returns the mean field of the outputs and
  states with the ponder cost ρ = N + R that the caller adds to its loss as τ · Σ_t ρ_t.
- `ponder` (Banino et al. 2021, "PonderNet: Learning to Ponder"): unrolls all M steps and returns
  every y^n with its halting distribution p^n, for `pondernet_loss` against `geometric_prior`;
  `ponder_sample` halts by sampling, as at evaluation time.

Batches carry per-example masks: an example that has halted is still computed with the batch,
but contributes nothing, so each example's result and gradients are those it would get alone.
Its later steps are run from the state it halted with, and whatever they return is dropped by
`torch.where` (never multiplied by a 0/1 mask, since 0 · NaN = NaN), so a NaN or Inf there
reaches neither the result nor its gradients. (What `where` cannot undo is a step function whose
own backward turns the zero gradient it receives into NaN, as 0 · ∞ inside it would.)

Mean fields and selections apply to the floating-point tensor leaves of a state; every other
leaf (Python ints, integer tensors) is taken from the last ponder step run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from diffvm.interp.kernels.act import act_accumulate

__all__ = [
    "ACT_EPSILON", "ACT_HALTING_BIAS", "ACTResult", "KL_LOG_FLOOR", "PonderResult", "SampledResult",
    "StepFn", "act", "geometric_prior", "halting_unit", "ponder", "ponder_sample", "pondernet_loss",
]

# Graves 2016: an input step halts once Σ_n h^n ≥ 1 − ε; ε > 0 lets it halt after a single step
# (h^1 only reaches 1 in the sigmoid's limit).
ACT_EPSILON = 0.01
# Graves 2016 initialises the halting unit's bias to 1, so that σ(b) ≈ 0.73 and an untrained
# network halts after one or two ponder steps: early training ponders little.
ACT_HALTING_BIAS = 1.0
# log p is taken of max(p, KL_LOG_FLOOR) in the KL: a zero p^n would give 0 · log 0 = 0 · (−∞) =
# NaN and a NaN gradient; with the floor its term is 0 · log(floor) = 0 and its gradient finite.
# The prior is floored likewise, as its tail underflows for large M. 1e-12 is well above float32's
# smallest normal number (~1.2e-38), so the floor is exact in float32 and float64.
KL_LOG_FLOOR = 1e-12

StepFn = Callable[[int, Any], tuple[torch.Tensor, torch.Tensor, Any]]


class ACTResult(NamedTuple):
    """What `act` returns for one input step.

    Attributes:
        output: (B, *O) y = Σ_n p^n y^n.
        state: the mean field Σ_n p^n s^n over floating leaves; other leaves from the last step run.
        ponder_cost: (B,) ρ = N + R, differentiable through R only.
        steps: (B,) long, N.
        remainder: (B,) R = 1 − Σ_{n<N} h^n.
        weights: (B, n_run) p^n for every ponder step run (zero after an example's N).
    """

    output: torch.Tensor
    state: Any
    ponder_cost: torch.Tensor
    steps: torch.Tensor
    remainder: torch.Tensor
    weights: torch.Tensor


class PonderResult(NamedTuple):
    """What `ponder` returns for one input step.

    Attributes:
        outputs: (B, M, *O) every y^n.
        weights: (B, M) p^n, summing to 1 over n.
        state: the mean field Σ_n p^n s^n over floating leaves; other leaves from step M.
        expected_steps: (B,) Σ_n n p^n.
    """

    outputs: torch.Tensor
    weights: torch.Tensor
    state: Any
    expected_steps: torch.Tensor


class SampledResult(NamedTuple):
    """What `ponder_sample` returns.

    Attributes:
        output: (B, *O) y^n of the step each example halted at.
        state: s^n of that step (floating leaves; other leaves from the last step run).
        steps: (B,) long, the step each example halted at.
    """

    output: torch.Tensor
    state: Any
    steps: torch.Tensor


def halting_unit(in_features: int) -> nn.Linear:
    """Graves' halting unit before its sigmoid, (B, in_features) -> (B, 1), bias ACT_HALTING_BIAS."""
    unit = nn.Linear(in_features, 1)
    nn.init.constant_(unit.bias, ACT_HALTING_BIAS)
    return unit


# --- state trees ------------------------------------------------------------------------------
def _map_float_leaves(fn: Callable[..., torch.Tensor], *trees: Any) -> Any:
    """fn(*leaves) at every floating-point tensor leaf of the trees (same structure); every other
    leaf is taken from the last tree."""
    flat = [tree_flatten(t) for t in trees]
    spec = flat[-1][1]
    for _, other in flat[:-1]:
        if other != spec:
            raise ValueError(f"halting: the step function's state changed structure between ponder steps: "
                             f"{other} then {spec}")
    out = [
        fn(*xs) if isinstance(xs[-1], torch.Tensor) and xs[-1].is_floating_point() else xs[-1]
        for xs in zip(*(leaves for leaves, _ in flat))
    ]
    return tree_unflatten(out, spec)


def _per_example(x: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """A (B,) mask or weight shaped to broadcast over a batch-first leaf (B, …)."""
    if leaf.dim() == 0 or leaf.shape[0] != x.shape[0]:
        raise ValueError(f"halting: state leaf of shape {tuple(leaf.shape)} is not batch-first; "
                         f"expected ({x.shape[0]}, …)")
    return x.reshape(x.shape[0], *([1] * (leaf.dim() - 1)))


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """a where the example's mask (B,) is set, else b; a leaf (B, …) is selected per example."""
    return torch.where(_per_example(mask, a), a, b)


def _mean_field_add(total: Any, p: torch.Tensor, tree: Any, mask: torch.Tensor | None = None) -> Any:
    """total + p^n · tree at the floating leaves (a bare tensor is a tree of one leaf); total None
    starts from 0. With a mask (B,), examples outside it add 0: their leaf is selected away before
    the product, so a NaN there reaches neither the value nor a gradient."""
    def term(x: torch.Tensor) -> torch.Tensor:
        return _per_example(p, x) * (x if mask is None else _where(mask, x, 0.0))

    if total is None:
        return _map_float_leaves(term, tree)
    return _map_float_leaves(lambda t, x: t + term(x), total, tree)


def _keep_halted(running: torch.Tensor, old: Any, new: Any) -> Any:
    """new for the examples still running (B,), old for the others, at the floating leaves."""
    return _map_float_leaves(lambda o, x: _where(running, x, o), old, new)


# --- checks -----------------------------------------------------------------------------------
def _check_max_steps(max_steps: int) -> None:
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int ≥ 1, got {max_steps!r}")


def _call(step: StepFn, n: int, state: Any, out_shape: tuple[int, ...] | None):
    """Run ponder step n and check what it returned; out_shape is step 1's output shape."""
    output, halt, state = step(n, state)
    if not isinstance(output, torch.Tensor) or output.dim() == 0 or not output.is_floating_point():
        raise ValueError(f"halting: step {n} returned output {output!r}; expected a floating tensor (B, *O)")
    if out_shape is not None and tuple(output.shape) != out_shape:
        raise ValueError(f"halting: step {n} returned output of shape {tuple(output.shape)}, "
                         f"but step 1's was {out_shape}")
    batch = output.shape[0]
    if not isinstance(halt, torch.Tensor) or tuple(halt.shape) != (batch,):
        got = f"of shape {tuple(halt.shape)}" if isinstance(halt, torch.Tensor) else f"of type {type(halt).__name__}"
        raise ValueError(f"halting: step {n} returned halt {got}; expected shape ({batch},), "
                         f"one probability per example")
    return output, halt, state


# --- ACT --------------------------------------------------------------------------------------
def act(step: StepFn, state: Any, *, max_steps: int, epsilon: float = ACT_EPSILON) -> ACTResult:
    """Adaptive Computation Time for one input step (Graves 2016, section 2).

    With h^n the halting probabilities of the ponder steps:
        N = min{n' : Σ_{n≤n'} h^n ≥ 1 − ε}, or M if no n' ≤ M reaches it;
        R = 1 − Σ_{n<N} h^n;
        p^n = h^n for n < N, p^N = R, p^n = 0 for n > N;
        y = Σ_n p^n y^n, s = Σ_n p^n s^n, ρ = N + R.
    h^N enters only the choice of N, so it gets no gradient (R does not depend on it), nor does
    any h^n with n > N; ρ's gradient is dρ/dh^n = −1 for n < N.

    Args:
        step: `step(n, state) -> (output (B, *O), halt (B,), state)`.
        state: the state before the first ponder step (a pytree of batch-first tensors).
        max_steps: M, the most ponder steps.
        epsilon: ε in (0, 1).
    Returns:
        `ACTResult`. The loop stops once every example has halted.
    """
    _check_max_steps(max_steps)
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")
    threshold = 1.0 - epsilon
    out_shape = None
    for n in range(1, max_steps + 1):
        y, h, new_state = _call(step, n, state, out_shape)
        leaves, spec = tree_flatten(new_state)
        floats = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor) and x.is_floating_point()]
        for i in floats:
            _per_example(h, leaves[i])  # raises on a leaf that is not batch-first
        values = [y, *(leaves[i] for i in floats)]
        if n == 1:
            out_shape = tuple(y.shape)
            batch = y.shape[0]
            running = torch.ones(batch, dtype=torch.bool, device=y.device)  # not halted before n
            cum = torch.zeros(batch, dtype=h.dtype, device=h.device)  # Σ_{j<n} h^j
            steps = torch.zeros(batch, dtype=torch.long, device=h.device)
            remainder = torch.zeros_like(cum)
            weights, first_spec, first_floats = [], spec, floats
            totals = [torch.zeros_like(x, memory_format=torch.contiguous_format) for x in values]  # Σ_n p^n·(y^n, s^n)
        elif spec != first_spec or floats != first_floats:
            raise ValueError(f"halting: the step function's state changed structure between ponder steps: "
                             f"{first_spec} then {spec}")
        # One pass (diffvm.interp.kernels.act_accumulate): h^n of halted examples may be anything (NaN
        # included) and is selected away, never multiplied; the threshold test is discrete (no gradient)
        # and only picks N; p^N = R; every leaf's mean field gains p^n·(its value where running).
        r = act_accumulate(h, cum, remainder, running, totals, values, last=n == max_steps, threshold=threshold)
        if n > 1:
            # Halted examples keep the state they halted with, so their later (discarded) steps run
            # from finite values however long the rest of the batch ponders.
            new_state = _keep_halted(running, state, new_state)
        steps = torch.where(r.halting, n, steps)
        cum, remainder, totals = r.cumulative, r.remainder, r.totals
        weights.append(r.weight)
        running = running & ~r.halting
        state = new_state
        if not running.any():
            break
    output, *state_means = totals
    for i, mean in zip(floats, state_means):
        leaves[i] = mean  # the mean field; every other leaf from the last step run
    mean_state = tree_unflatten(leaves, spec)
    return ACTResult(
        output=output,
        state=mean_state,
        ponder_cost=steps.to(remainder.dtype) + remainder,  # N is an integer: gradient through R only
        steps=steps,
        remainder=remainder,
        weights=torch.stack(weights, dim=1),  # (B, n_run)
    )


# --- PonderNet --------------------------------------------------------------------------------
def ponder(step: StepFn, state: Any, *, max_steps: int) -> PonderResult:
    """PonderNet's training-time unroll (Banino et al. 2021, section 2): all M steps are run.

    p^n = λ^n Π_{j<n} (1 − λ^j), the probability of halting at step n. The distribution is
    truncated at M: the last step takes all the mass left, p^M = Π_{j<M} (1 − λ^j) (λ^M treated
    as 1, so λ^M gets no gradient), and Σ_n p^n = 1.

    Args:
        step: `step(n, state) -> (output (B, *O), λ^n (B,), state)`.
        state: the state before the first step.
        max_steps: M.
    Returns:
        `PonderResult`.
    """
    _check_max_steps(max_steps)
    outputs, weights = [], []
    out_shape = None
    for n in range(1, max_steps + 1):
        y, lam, new_state = _call(step, n, state, out_shape)
        if n == 1:
            out_shape = tuple(y.shape)
            not_halted = torch.ones_like(lam)  # Π_{j<n} (1 − λ^j)
            mean_state = None
        if n < max_steps:
            p = lam * not_halted
            not_halted = not_halted * (1.0 - lam)
        else:
            p = not_halted  # the truncation: λ^M treated as 1
        mean_state = _mean_field_add(mean_state, p, new_state)
        outputs.append(y)
        weights.append(p)
        state = new_state
    weights = torch.stack(weights, dim=1)  # (B, M)
    n = torch.arange(1, max_steps + 1, dtype=weights.dtype, device=weights.device)
    return PonderResult(
        outputs=torch.stack(outputs, dim=1),  # (B, M, *O)
        weights=weights,
        state=mean_state,
        expected_steps=weights @ n,
    )


def geometric_prior(lambda_p: float, max_steps: int, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """PonderNet's prior p_G(n) = λ_p (1 − λ_p)^{n−1}, n = 1 … M: (M,).

    The geometric distribution is truncated at M and renormalised to sum to 1 (divided by
    1 − (1 − λ_p)^M), so that it is comparable with `ponder`'s weights, which sum to 1 over M steps.
    """
    _check_max_steps(max_steps)
    if not 0.0 < lambda_p <= 1.0:
        raise ValueError(f"lambda_p must be in (0, 1], got {lambda_p!r}")
    n = torch.arange(max_steps, dtype=torch.float64)
    prior = lambda_p * (1.0 - lambda_p) ** n  # (M,)
    return (prior / prior.sum()).to(dtype or torch.get_default_dtype())


def pondernet_loss(
    step_losses: torch.Tensor, weights: torch.Tensor, lambda_p: float, beta: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """PonderNet's loss L = L_rec + β · L_reg (Banino et al. 2021, eq. 4).

    L_rec = mean_b Σ_n p^n L_n and L_reg = mean_b KL(p ‖ p_G) with
    KL = Σ_n p^n (log p^n − log p_G(n)); a term with p^n = 0 is 0 (log taken of max(p, KL_LOG_FLOOR)).

    Args:
        step_losses: (B, M) L_n, the loss of each step's output.
        weights: (B, M) p^n from `ponder`.
        lambda_p: the prior's λ_p in (0, 1].
        beta: β ≥ 0.
    Returns:
        the scalar loss and {"reconstruction": L_rec, "kl": mean_b KL (before β)}.
    """
    if step_losses.dim() != 2 or step_losses.shape != weights.shape:
        raise ValueError(f"pondernet_loss: step_losses has shape {tuple(step_losses.shape)} and weights "
                         f"{tuple(weights.shape)}; expected both (B, M)")
    if beta < 0:
        raise ValueError(f"beta must be ≥ 0, got {beta!r}")
    prior = geometric_prior(lambda_p, weights.shape[1], dtype=weights.dtype).to(weights.device)  # (M,)
    reconstruction = (weights * step_losses).sum(dim=1).mean()
    # Floors: see KL_LOG_FLOOR (0 · log 0 is NaN in floating point, and so is its gradient).
    log_ratio = weights.clamp_min(KL_LOG_FLOOR).log() - prior.clamp_min(KL_LOG_FLOOR).log()  # (B, M)
    kl = (weights * log_ratio).sum(dim=1).mean()
    loss = reconstruction + beta * kl
    return loss, {"reconstruction": reconstruction.item(), "kl": kl.item()}


def ponder_sample(step: StepFn, state: Any, *, max_steps: int, generator: torch.Generator) -> SampledResult:
    """PonderNet's evaluation-time halting: at step n each example still running halts with
    probability λ^n (a Bernoulli draw from `generator`), and surely at n = M; its output and state
    are those of the step it halted at. The loop stops once every example has halted.

    Args:
        step: `step(n, state) -> (output (B, *O), λ^n (B,), state)`.
        state: the state before the first step.
        max_steps: M.
        generator: the source of the draws; the same seed gives the same halting steps.
    Returns:
        `SampledResult`.
    """
    _check_max_steps(max_steps)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    out_shape = None
    for n in range(1, max_steps + 1):
        y, lam, new_state = _call(step, n, state, out_shape)
        if n == 1:
            out_shape = tuple(y.shape)
            running = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
            steps = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
            output = y
        else:
            # An example that halted keeps its output and state (it runs on from that state).
            output = _where(running, y, output)
            new_state = _keep_halted(running, state, new_state)
        # One uniform draw per example every step, halted or not, so an example's draws do not
        # depend on the others'; u < λ has probability λ (a NaN λ of a halted example compares False).
        u = torch.rand(lam.shape, generator=generator, dtype=lam.dtype, device=generator.device)
        halting = running & ((u.to(lam.device) < lam) | (n == max_steps))
        steps = torch.where(halting, n, steps)
        running = running & ~halting
        state = new_state
        if not running.any():
            break
    return SampledResult(output=output, state=state, steps=steps)
