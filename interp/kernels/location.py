"""The NTM's location addressing fused into one kernel: interpolation, circular shift and
sharpening (Graves et al. 2014, §3.3.2, eq. 7–9). With `content_weights` (eq. 5–6) before it, it
is the NTM's whole addressing chain.

Notation (docs/NOTATION.md): B batch, H heads, N slots, S = 2·r + 1 shift offsets −r … +r
(s[..., r] is offset 0). For a head with content weighting w^c, last weighting w_{t−1}, gate g,
shift weighting s and exponent γ:

    w^g(i) = g·w^c(i) + (1 − g)·w_{t−1}(i)                       (eq. 7)
    w̃(i)   = Σ_d s(d)·w^g(i − d mod N)                            (eq. 8)
    w(i)   = softmax_i(γ · log max(w̃(i), tiny))                   (eq. 9)

the same function as `interpolate`, `shift` and `sharpen` of `diffvm.memory.addressing` (the
tests check it, to the bit for the reference), tiny the dtype's smallest normal number for the
reasons that module gives.

Backward, with ∂ℓ/∂z = w ⊙ (∂ℓ/∂w − Σ_i w(i)·∂ℓ/∂w(i)) through the softmax:

    ∂ℓ/∂γ    = Σ_i ∂ℓ/∂z(i)·log max(w̃(i), tiny)
    ∂ℓ/∂w̃(i) = γ·∂ℓ/∂z(i) / w̃(i) where w̃(i) ≥ tiny, else 0
    ∂ℓ/∂w^g(j) = Σ_d s(d)·∂ℓ/∂w̃(j + d mod N),   ∂ℓ/∂s(d) = Σ_i ∂ℓ/∂w̃(i)·w^g(i − d mod N)
    ∂ℓ/∂w^c = g·∂ℓ/∂w^g,  ∂ℓ/∂w_{t−1} = (1 − g)·∂ℓ/∂w^g,  ∂ℓ/∂g = Σ_j ∂ℓ/∂w^g(j)·(w^c(j) − w_{t−1}(j))

The op saves its inputs; w^g, w̃ and w are O(B·H·N) and recomputed.

`location_weights` is the entry point; `location_weights_reference` is the plain-PyTorch function
(the test oracle and the benchmark baseline). The op `diffvm::location_weights` and its backward
`diffvm::location_weights_backward` are `torch.library.custom_op`s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, eager_reference, use_triton

__all__ = ["location_weights", "location_weights_reference"]


def _sources(slots: int, size: int, device, sign: int) -> Tensor:
    """(N, S) index table: column d holds (i − sign·(d − r)) mod N for every slot i."""
    offsets = torch.arange(size, device=device) - size // 2  # (S,): −r … +r
    return (torch.arange(slots, device=device).unsqueeze(1) - sign * offsets) % slots  # (N, S)


def _forward_parts(content: Tensor, previous: Tensor, gate: Tensor, shifts: Tensor,
                   gamma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """w^g, w̃, log max(w̃, tiny) and w, each (B, H, N), computed as diffvm.memory.addressing does."""
    g = gate.unsqueeze(-1)  # (B, H, 1)
    interpolated = g * content + (1 - g) * previous  # (B, H, N) eq. 7
    rolled = interpolated[..., _sources(content.shape[-1], shifts.shape[-1], content.device, 1)]  # (B, H, N, S)
    shifted = (rolled * shifts.unsqueeze(-2)).sum(-1)  # (B, H, N) eq. 8
    log_w = torch.log(shifted.clamp_min(torch.finfo(shifted.dtype).tiny))  # (B, H, N), finite
    return interpolated, shifted, log_w, torch.softmax(gamma.unsqueeze(-1) * log_w, dim=-1)  # eq. 9


def location_weights_reference(content: Tensor, previous: Tensor, gate: Tensor, shifts: Tensor,
                               gamma: Tensor) -> Tensor:
    """w from w^c, w_{t−1}, g, s, γ in plain PyTorch (module docstring), differentiable by autograd.

    Args:
        content: (B, H, N) w^c.
        previous: (B, H, N) w_{t−1}.
        gate: (B, H) g in [0, 1].
        shifts: (B, H, S) s, S = 2·r + 1 odd.
        gamma: (B, H) γ ≥ 1.
    Returns:
        (B, H, N) on the simplex.
    """
    return _forward_parts(content, previous, gate, shifts, gamma)[-1]


def _location_backward_reference(grad: Tensor, content: Tensor, previous: Tensor, gate: Tensor, shifts: Tensor,
                                 gamma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂(w^c, w_{t−1}, g, s, γ) by hand (module docstring), from the op's inputs."""
    interpolated, shifted, log_w, weights = _forward_parts(content, previous, gate, shifts, gamma)
    grad_z = weights * (grad - (weights * grad).sum(-1, keepdim=True))  # (B, H, N) through the softmax
    grad_gamma = (grad_z * log_w).sum(-1)  # (B, H)
    tiny = torch.finfo(shifted.dtype).tiny
    grad_shifted = torch.where(shifted >= tiny, gamma.unsqueeze(-1) * grad_z / shifted.clamp_min(tiny), 0.0)
    slots, size = content.shape[-1], shifts.shape[-1]
    ahead = grad_shifted[..., _sources(slots, size, content.device, -1)]  # (B, H, N, S): ∂ℓ/∂w̃(j + d)
    grad_interpolated = (ahead * shifts.unsqueeze(-2)).sum(-1)  # (B, H, N)
    rolled = interpolated[..., _sources(slots, size, content.device, 1)]  # (B, H, N, S): w^g(i − d)
    grad_shifts = torch.einsum("bhn,bhns->bhs", grad_shifted, rolled)  # (B, H, S)
    g = gate.unsqueeze(-1)  # (B, H, 1)
    grad_gate = (grad_interpolated * (content - previous)).sum(-1)  # (B, H)
    return g * grad_interpolated, (1 - g) * grad_interpolated, grad_gate, grad_shifts, grad_gamma


@torch.library.custom_op("diffvm::location_weights", mutates_args=())
def _location(content: Tensor, previous: Tensor, gate: Tensor, shifts: Tensor, gamma: Tensor,
              triton: bool) -> Tensor:
    """w (B, H, N) by the Triton kernel (`triton`) or the reference."""
    if triton:
        from diffvm.interp.kernels import _location_triton  # imported on first use: Triton is optional

        return _location_triton.location_forward(content, previous, gate, shifts, gamma)
    return location_weights_reference(content, previous, gate, shifts, gamma)


@_location.register_fake
def _(content, previous, gate, shifts, gamma, triton):
    return torch.empty_like(content)


@torch.library.custom_op("diffvm::location_weights_backward", mutates_args=())
def _location_backward(grad: Tensor, content: Tensor, previous: Tensor, gate: Tensor, shifts: Tensor, gamma: Tensor,
                       triton: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂w^c, ∂ℓ/∂w_{t−1} (B, H, N), ∂ℓ/∂g (B, H), ∂ℓ/∂s (B, H, S), ∂ℓ/∂γ (B, H)."""
    if triton:
        from diffvm.interp.kernels import _location_triton

        return _location_triton.location_backward(grad, content, previous, gate, shifts, gamma)
    return _location_backward_reference(grad, content, previous, gate, shifts, gamma)


@_location_backward.register_fake
def _(grad, content, previous, gate, shifts, gamma, triton):
    return tuple(torch.empty_like(x) for x in (content, previous, gate, shifts, gamma))


def _setup_context(ctx, inputs, output):
    *tensors, triton = inputs
    ctx.save_for_backward(*tensors)
    ctx.triton = triton


def _backward(ctx, grad):
    return (*_location_backward(grad, *ctx.saved_tensors, ctx.triton), None)


_location.register_autograd(_backward, setup_context=_setup_context)


def location_weights(content: Tensor, previous: Tensor, gate: Tensor, shifts: Tensor, gamma: Tensor, *,
                     impl: str = "auto") -> Tensor:
    """sharpen(shift(interpolate(w^c, w_{t−1}, g), s), γ): the NTM's location addressing (eq. 7–9).

    A drop-in for that composition of `diffvm.memory.addressing` functions.

    Args:
        content: (B, H, N) w^c.
        previous: (B, H, N) w_{t−1}.
        gate: (B, H) g in [0, 1].
        shifts: (B, H, S) s on the simplex, S = 2·r + 1 odd, s[..., r] the weight of offset 0.
        gamma: (B, H) γ ≥ 1.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        (B, H, N) on the simplex.
    """
    heads = content.shape[:2]
    if content.dim() != 3 or previous.shape != content.shape or gate.shape != heads or gamma.shape != heads \
            or shifts.dim() != 3 or shifts.shape[:2] != heads:
        raise ValueError(f"location_weights: expected content and previous (B, H, N), gate and gamma (B, H), shifts "
                         f"(B, H, S), got {tuple(content.shape)}, {tuple(previous.shape)}, {tuple(gate.shape)}, "
                         f"{tuple(gamma.shape)}, {tuple(shifts.shape)}")
    if shifts.shape[-1] % 2 != 1:
        raise ValueError(f"location_weights: shift weighting has {shifts.shape[-1]} entries; expected an odd 2·r + 1")
    check_floats("location_weights", content=content, previous=previous, gate=gate, shifts=shifts, gamma=gamma)
    if eager_reference(impl, content, previous, gate, shifts, gamma):
        return location_weights_reference(content, previous, gate, shifts, gamma)
    triton = use_triton(impl, "location_weights", content, previous, gate, shifts, gamma)
    return _location(content, previous, gate, shifts, gamma, triton)
