"""The NTM/DNC erase/add write fused with the reads of the same step (Graves et al. 2014, eq. 2–4;
Graves et al. 2016, Methods "Writing", "Reading"), one pass over the memory.

Notation (docs/NOTATION.md): B batch, N slots, W word width, H write heads, R read heads. With
write weightings w_h, erase vectors e_h and add vectors a_h, and read weightings w^r_r given:

    M_t[n]  = M_{t−1}[n] ⊙ Π_h (1 − w_h[n]·e_h) + Σ_h w_h[n]·a_h            (eq. 3–4)
    r_r     = Σ_n w^r_r[n]·X[n],   X = M_t, or X = M_{t−1} with `reads_before_write`   (eq. 2)

the same function as the NTM's write followed by its reads, as `diffvm.memory.ntm` computed them
before it called this op (the tests check it, to the bit for the reference); with one head it is the
DNC's M_{t−1} ∘ (E − w eᵀ) + w vᵀ. `diffvm.memory.ntm.erase_add` is this op with R = 0.

Which reads can be fused: the read weightings must be known before the memory is read. The NTM's
and DNC's `forward` address their read heads on M_t by content, so their reads cannot join the
write (they call this op with R = 0, the write alone); a machine step of the NTM reads M_{t−1} at
a pointer chosen beforehand and then writes (`NTMMemory.machine_step`): that is
`reads_before_write=True`.

Backward, with G = ∂ℓ/∂M_t + (∂ℓ/∂X if X = M_t), ∂ℓ/∂X[n] = Σ_r w^r_r[n]·∂ℓ/∂r_r, keep = Π_h (1 −
w_h e_h) and E_h[n] = Π_{h' ≠ h} (1 − w_h'[n]·e_h') (a product over the other heads, never a
quotient: a hard write has a factor 1 − 1·1 = 0):

    ∂ℓ/∂M_{t−1} = G ⊙ keep + (∂ℓ/∂X if X = M_{t−1})
    ∂ℓ/∂w^r_r[n] = Σ_w ∂ℓ/∂r_r[w]·X[n, w]
    ∂ℓ/∂a_h     = Σ_n w_h[n]·G[n]
    ∂ℓ/∂w_h[n]  = Σ_w G[n, w]·(a_h[w] − M_{t−1}[n, w]·e_h[w]·E_h[n, w])
    ∂ℓ/∂e_h     = −Σ_n w_h[n]·G[n] ⊙ M_{t−1}[n] ⊙ E_h[n]

The op saves its inputs; M_t, keep and E_h are recomputed in the backward.

`write_and_read` is the entry point; `write_and_read_reference` is the plain-PyTorch function (the
test oracle and the benchmark baseline). The op `diffvm::write_and_read` and its backward
`diffvm::write_and_read_backward` are `torch.library.custom_op`s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from diffvm.interp.kernels._dispatch import check_floats, eager_reference, use_triton

__all__ = ["write_and_read", "write_and_read_reference"]


def _written(memory: Tensor, write_weights: Tensor, erase: Tensor, add: Tensor) -> tuple[Tensor, Tensor]:
    """keep = Π_h (1 − w_h e_hᵀ) and M_t, each (B, N, W)."""
    keep = (1 - write_weights.unsqueeze(-1) * erase.unsqueeze(-2)).prod(1)  # (B, N, W)
    added = torch.einsum("bhn,bhw->bnw", write_weights, add)  # (B, N, W): Σ_h w_h(i)·a_h
    return keep, memory * keep + added


def write_and_read_reference(memory: Tensor, write_weights: Tensor, erase: Tensor, add: Tensor, read_weights: Tensor,
                             reads_before_write: bool = False) -> tuple[Tensor, Tensor]:
    """M_t and the reads in plain PyTorch (module docstring), differentiable by autograd.

    Args:
        memory: (B, N, W) M_{t−1}.
        write_weights: (B, H, N) w_h.
        erase: (B, H, W) e_h in [0, 1].
        add: (B, H, W) a_h.
        read_weights: (B, R, N) w^r_r; R may be 0.
        reads_before_write: read M_{t−1} instead of M_t.
    Returns:
        M_t (B, N, W) and the reads (B, R, W).
    """
    _, new_memory = _written(memory, write_weights, erase, add)
    read_from = memory if reads_before_write else new_memory
    return new_memory, torch.einsum("brn,bnw->brw", read_weights, read_from)  # (B, N, W), (B, R, W)


def _write_and_read_backward_reference(grad_memory: Tensor, grad_reads: Tensor, memory: Tensor, write_weights: Tensor,
                                       erase: Tensor, add: Tensor, read_weights: Tensor,
                                       reads_before_write: bool) -> tuple[Tensor, ...]:
    """∂ℓ/∂(M_{t−1}, w, e, a, w^r) by hand (module docstring), from the op's inputs."""
    factors = 1 - write_weights.unsqueeze(-1) * erase.unsqueeze(-2)  # (B, H, N, W): 1 − w_h(n)·e_h(w)
    keep = factors.prod(1)  # (B, N, W)
    grad_read_from = torch.einsum("brn,brw->bnw", read_weights, grad_reads)  # (B, N, W) ∂ℓ/∂X
    if reads_before_write:
        read_from = memory
    else:
        read_from = memory * keep + torch.einsum("bhn,bhw->bnw", write_weights, add)  # (B, N, W) M_t
    grad_new = grad_memory if reads_before_write else grad_memory + grad_read_from  # (B, N, W) G
    grad_prev = grad_new * keep + grad_read_from if reads_before_write else grad_new * keep  # (B, N, W)
    grad_read_weights = torch.einsum("brw,bnw->brn", grad_reads, read_from)  # (B, R, N)
    grad_add = torch.einsum("bhn,bnw->bhw", write_weights, grad_new)  # (B, H, W)
    erased = (grad_new * memory).unsqueeze(1)  # (B, 1, N, W): G ⊙ M_{t−1}, times E_h = 1 for one head
    if factors.shape[1] > 1:
        # E_h = Π_{h' < h} · Π_{h' > h}: exclusive products from both sides
        before = F.pad(factors.cumprod(1)[:, :-1], (0, 0, 0, 0, 1, 0), value=1.0)  # (B, H, N, W)
        after = F.pad(factors.flip(1).cumprod(1)[:, :-1], (0, 0, 0, 0, 1, 0), value=1.0).flip(1)  # (B, H, N, W)
        erased = erased * before * after  # (B, H, N, W): G ⊙ M_{t−1} ⊙ E_h
    grad_write = torch.einsum("bnw,bhw->bhn", grad_new, add) - torch.einsum("bhnw,bhw->bhn", erased, erase)  # (B, H, N)
    grad_erase = -torch.einsum("bhnw,bhn->bhw", erased, write_weights)  # (B, H, W)
    return grad_prev, grad_write, grad_erase, grad_add, grad_read_weights


@torch.library.custom_op("diffvm::write_and_read", mutates_args=())
def _write_and_read(memory: Tensor, write_weights: Tensor, erase: Tensor, add: Tensor, read_weights: Tensor,
                    reads_before_write: bool, triton: bool) -> tuple[Tensor, Tensor]:
    """M_t (B, N, W) and the reads (B, R, W) by the Triton kernel (`triton`) or the reference."""
    if triton:
        from diffvm.interp.kernels import _write_triton  # imported on first use: Triton is optional

        return _write_triton.write_forward(memory, write_weights, erase, add, read_weights, reads_before_write)
    return write_and_read_reference(memory, write_weights, erase, add, read_weights, reads_before_write)


@_write_and_read.register_fake
def _(memory, write_weights, erase, add, read_weights, reads_before_write, triton):
    return torch.empty_like(memory, memory_format=torch.contiguous_format), \
        memory.new_empty(read_weights.shape[0], read_weights.shape[1], memory.shape[2])


@torch.library.custom_op("diffvm::write_and_read_backward", mutates_args=())
def _write_and_read_backward(grad_memory: Tensor, grad_reads: Tensor, memory: Tensor, write_weights: Tensor,
                             erase: Tensor, add: Tensor, read_weights: Tensor, reads_before_write: bool,
                             triton: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """∂ℓ/∂M_{t−1} (B, N, W), ∂ℓ/∂w (B, H, N), ∂ℓ/∂e (B, H, W), ∂ℓ/∂a (B, H, W), ∂ℓ/∂w^r (B, R, N)."""
    if triton:
        from diffvm.interp.kernels import _write_triton

        return _write_triton.write_backward(grad_memory, grad_reads, memory, write_weights, erase, add, read_weights,
                                            reads_before_write)
    return _write_and_read_backward_reference(grad_memory, grad_reads, memory, write_weights, erase, add, read_weights,
                                              reads_before_write)


@_write_and_read_backward.register_fake
def _(grad_memory, grad_reads, memory, write_weights, erase, add, read_weights, reads_before_write, triton):
    return tuple(torch.empty_like(x, memory_format=torch.contiguous_format)
                 for x in (memory, write_weights, erase, add, read_weights))


def _setup_context(ctx, inputs, output):
    *tensors, reads_before_write, triton = inputs
    ctx.save_for_backward(*tensors)
    ctx.reads_before_write, ctx.triton = reads_before_write, triton


def _backward(ctx, grad_memory, grad_reads):
    grads = _write_and_read_backward(grad_memory, grad_reads, *ctx.saved_tensors, ctx.reads_before_write, ctx.triton)
    return (*grads, None, None)


_write_and_read.register_autograd(_backward, setup_context=_setup_context)


def write_and_read(memory: Tensor, write_weights: Tensor, erase: Tensor, add: Tensor, read_weights: Tensor, *,
                   reads_before_write: bool = False, impl: str = "auto") -> tuple[Tensor, Tensor]:
    """The erase/add write of H heads and the reads of R heads in one pass (module docstring).

    A drop-in for the erase/add write followed by `einsum("brn,bnw->brw", w^r, M)` (the same numbers
    forward; `diffvm.memory.ntm` writes through it).

    Args:
        memory: (B, N, W) M_{t−1}.
        write_weights: (B, H, N) w_h.
        erase: (B, H, W) e_h in [0, 1].
        add: (B, H, W) a_h.
        read_weights: (B, R, N) w^r_r; R = 0 for the write alone.
        reads_before_write: read M_{t−1} (the pointer reads of a machine step) instead of M_t.
        impl: "auto", "reference" or "triton" (`diffvm.interp.kernels.IMPLEMENTATIONS`).
    Returns:
        M_t (B, N, W) and the reads (B, R, W).
    """
    if memory.dim() != 3 or write_weights.dim() != 3 or erase.dim() != 3 or add.dim() != 3 or read_weights.dim() != 3:
        ok = False
    else:
        (batch, slots, width), heads = memory.shape, write_weights.shape[1]
        ok = (write_weights.shape == (batch, heads, slots) and erase.shape == add.shape == (batch, heads, width)
              and read_weights.shape[0] == batch and read_weights.shape[2] == slots)
    if not ok:
        raise ValueError(f"write_and_read: expected memory (B, N, W), write_weights (B, H, N), erase and add "
                         f"(B, H, W), read_weights (B, R, N), got {tuple(memory.shape)}, {tuple(write_weights.shape)}, "
                         f"{tuple(erase.shape)}, {tuple(add.shape)}, {tuple(read_weights.shape)}")
    check_floats("write_and_read", memory=memory, write_weights=write_weights, erase=erase, add=add,
                 read_weights=read_weights)
    if eager_reference(impl, memory, write_weights, erase, add, read_weights):
        return write_and_read_reference(memory, write_weights, erase, add, read_weights, bool(reads_before_write))
    triton = use_triton(impl, "write_and_read", memory, write_weights, erase, add, read_weights)
    return _write_and_read(memory, write_weights, erase, add, read_weights, bool(reads_before_write), triton)
