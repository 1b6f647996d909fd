"""The Differentiable Neural Computer's memory (Graves et al. 2016, Methods), with the options of
Csordás & Schmidhuber 2019: key masking, de-allocation and link distribution sharpening.

Notation (docs/NOTATION.md): B batch, N slots, W word width, R read heads.

The memory wires three mechanisms together: content lookup (`diffvm.memory.addressing`), usage
and allocation (`diffvm.memory.usage`) and temporal linkage (`diffvm.memory.linkage`). One step
(`DNCMemory.forward`), in the paper's order:

    ψ_t   = Π_i (1 − f^i w^{r,i}_{t−1})                                  retention
    u_t   = (u_{t−1} + w^w_{t−1} − u_{t−1} ∘ w^w_{t−1}) ∘ ψ_t            usage
    a_t   = allocation(u_t)                                              the free list's head
    c^w_t = C(M_{t−1}, k^w, β^w)                                         write content lookup
    w^w_t = g^w (g^a a_t + (1 − g^a) c^w_t)                              write weighting
    M_t   = M_{t−1} ∘ (E − w^w_t eᵀ) + w^w_t vᵀ                          erase, then add
    L_t, p_t from w^w_t                                                   temporal linkage
    f^i_t = L_t w^{r,i}_{t−1},  b^i_t = L_tᵀ w^{r,i}_{t−1}                forward, backward
    c^{r,i}_t = C(M_t, k^{r,i}, β^{r,i})                                 read content lookup
    w^{r,i}_t = π^i[0] b^i_t + π^i[1] c^{r,i}_t + π^i[2] f^i_t           read weighting
    r^i_t = M_tᵀ w^{r,i}_t                                               read vectors

The read modes π are ordered as the paper's: backward, content, forward (`READ_MODES`).

Options (Csordás & Schmidhuber 2019):
- key masking (§3.1): every key k comes with a mask m ∈ [0, 1]^W and the lookup compares only the
  masked parts, C(M, k, β, m)[i] = softmax_i(β · D(k ∘ m, M[i] ∘ m)), separating the key part of
  a word from its value part;
- de-allocation (§3.2): memory freed by the free gates is wiped, not only marked reusable,
  M_t = M_{t−1} ∘ (ψ_t 1ᵀ) ∘ (E − w^w_t eᵀ) + w^w_t vᵀ, so stale words stop matching content
  lookups; the write's content lookup still sees M_{t−1}, as in the DNC;
- link sharpening (§3.3): f^i and b^i sharpened by exponents s^{f,i}, s^{b,i} ≥ 1
  (`diffvm.memory.linkage.sharpen_links`).

And the sparse link matrix of Graves et al. 2016 (Methods "Sparse link matrix"), `link_top_k=K`:
every row of L keeps its K largest entries and new links are made from the K largest entries of
p (`diffvm.memory.linkage.sparse_linkage_step`, whose docstring says exactly what is
approximated), O(N·K) per step in time and BPTT memory instead of O(N²). Wherever the writes are
one-hot, as the hard DNC's allocating writes (g^a = 1 on binary usage), every row of L holds one
entry at most and the sparse link is the dense one exactly; a hard content write (g^a = 0) spreads
over the slots whose words tie, and there the cut may apply.

The hard DNC (`DNCMemory.harden`): gates e, f, g^a, g^w and masks in {0, 1}, one-hot read modes,
key strengths `HARD_STRENGTH`. With g^w = g^a = 1 a write takes the lowest-indexed free slot
(none when all are used) and replaces the word where e = 1 (adds where e = 0); a free gate of 1
makes the slot that head read last step free again; the link matrix is the write order as a
linked list, and the forward and backward modes step one write later or earlier along it; the
content mode reads the slot whose word best matches the key, as an argmax when the words differ
by more than 1 / `HARD_STRENGTH` in cosine similarity. Usage stays in {0, 1}; a slot is used from
the step after its write.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch

from diffvm.interp.device import Device, InterfaceField, hard_choice, hard_gate
from diffvm.interp.kernels import linkage_step
from diffvm.memory.addressing import content_weights
from diffvm.memory.linkage import (
    LinkageState,
    SparseLinkageState,
    initial_linkage,
    initial_sparse_linkage,
    sharpen_links,
    sparse_linkage_step,
)
from diffvm.memory.usage import allocation_weights, retention, update_usage

__all__ = ["HARD_STRENGTH", "MEMORY_INIT", "READ_MODES", "DNCMemory", "DNCState"]

# Every cell starts at this constant (Collier & Beel 2018): no row has zero norm, so cosine
# similarities are defined from the first step, and constant memory trains faster than random.
MEMORY_INIT = 1e-6
# The read modes in the order of π's last axis (the paper's π[1], π[2], π[3]).
READ_MODES = ("backward", "content", "forward")
# The key strength β of the hard DNC: content lookups become an argmax over slots whose cosine
# similarities differ by more than ~1e-3 (e^{-10} relative weight, or less, for the runners-up).
HARD_STRENGTH = 1e4


class DNCState(NamedTuple):
    """The DNC's state between steps.

    Attributes:
        memory: (B, N, W) M_t.
        usage: (B, N) u_t (the previous step's write is counted at the next step).
        linkage: `LinkageState`: link (B, N, N) L_t and precedence (B, N) p_t; with
            `link_top_k`, a `SparseLinkageState`: L_t's kept entries (B, N, K) and p_t (B, N).
        read_weights: (B, R, N) w^r_t.
        write_weights: (B, N) w^w_t.
    """

    memory: torch.Tensor
    usage: torch.Tensor
    linkage: LinkageState | SparseLinkageState
    read_weights: torch.Tensor
    write_weights: torch.Tensor


class _EraseAdd(torch.autograd.Function):
    """M_t = M ∘ (E − w eᵀ) + w vᵀ for one write head, and its gradient by hand.

    Autograd of the elementwise form keeps three (B, N, W) temporaries per step and runs about a
    dozen passes over them in the backward; this saves the inputs only (M is the previous state,
    which exists anyway) and runs seven. With G = ∂ℓ/∂M_t:

        ∂ℓ/∂M = G ∘ (E − w eᵀ),   ∂ℓ/∂w = G v − (G ∘ M) e,   ∂ℓ/∂e = −(G ∘ M)ᵀ w,   ∂ℓ/∂v = Gᵀ w
    """

    @staticmethod
    def forward(ctx, memory: torch.Tensor, w: torch.Tensor, e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(memory, w, e, v)
        keep = torch.baddbmm(memory.new_ones(()), w.unsqueeze(-1), e.unsqueeze(1), alpha=-1)  # (B, N, W): 1 − w[i]·e
        return keep.mul_(memory).baddbmm_(w.unsqueeze(-1), v.unsqueeze(1))  # (B, N, W): M ∘ keep + w vᵀ

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        memory, w, e, v = ctx.saved_tensors
        keep = torch.baddbmm(memory.new_ones(()), w.unsqueeze(-1), e.unsqueeze(1), alpha=-1)  # (B, N, W)
        grad_memory = keep.mul_(grad)  # (B, N, W)
        erased = grad * memory  # (B, N, W): G ∘ M
        grad_w = (torch.bmm(grad, v.unsqueeze(-1)) - torch.bmm(erased, e.unsqueeze(-1))).squeeze(-1)  # (B, N)
        grad_e = -torch.bmm(w.unsqueeze(1), erased).squeeze(1)  # (B, W)
        grad_v = torch.bmm(w.unsqueeze(1), grad).squeeze(1)  # (B, W)
        return grad_memory, grad_w, grad_e, grad_v


@functools.cache
def _interface_type(fields: tuple[str, ...]) -> type:
    """The NamedTuple of interface fields `fields`: one per combination of options."""
    return NamedTuple("DNCInterface", [(name, torch.Tensor) for name in fields])


class DNCMemory(Device):
    """DNC memory: N slots of width W, R read heads, one write head.

    Args:
        slots: N ≥ 1.
        width: W ≥ 1.
        read_heads: R ≥ 1.
        key_masking: give every read and write key a mask (Csordás & Schmidhuber §3.1).
        deallocation: wipe the memory that free gates release (§3.2).
        link_sharpness: sharpen the forward and backward weightings (§3.3).
        link_top_k: None for the exact N×N link matrix, or K ≥ 1 for the sparse link matrix that
            keeps K entries per row (Graves et al. 2016 use K = 8; K ≥ N is exact).

    The interface, a NamedTuple `self.Interface` whose fields follow the paper's interface vector
    (shapes per example; B leads each):

        read_k (R, W) identity    read keys k^{r,i}
        read_beta (R,) oneplus    read strengths β^{r,i}
        write_k (1, W) identity   write key k^w
        write_beta (1,) oneplus   write strength β^w
        e (W,) sigmoid            erase vector
        v (W,) identity           write vector
        f (R,) sigmoid            free gates f^i
        g_a () sigmoid            allocation gate g^a
        g_w () sigmoid            write gate g^w
        pi (R, 3) softmax         read modes π^i over `READ_MODES` (backward, content, forward)
        read_m (R, W) sigmoid     read key masks, with key_masking
        write_m (1, W) sigmoid    write key mask, with key_masking
        s_f (R,) oneplus          forward sharpness s^{f,i}, with link_sharpness
        s_b (R,) oneplus          backward sharpness s^{b,i}, with link_sharpness

    `Interface` is a property, not a class attribute, because the optional fields exist only
    when their option is on; `DNCMemory.Interface` on the class is not a type.
    """

    State = DNCState

    def __init__(self, slots: int, width: int, read_heads: int = 1, *, key_masking: bool = False,
                 deallocation: bool = False, link_sharpness: bool = False, link_top_k: int | None = None):
        super().__init__()
        for name, value in [("slots", slots), ("width", width), ("read_heads", read_heads)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DNCMemory: {name} must be an integer ≥ 1, got {value!r}")
        for name, value in [("key_masking", key_masking), ("deallocation", deallocation),
                            ("link_sharpness", link_sharpness)]:
            if not isinstance(value, bool):
                raise ValueError(f"DNCMemory: {name} must be True or False, got {value!r}")
        if link_top_k is not None and (not isinstance(link_top_k, int) or isinstance(link_top_k, bool)
                                       or link_top_k < 1):
            raise ValueError(f"DNCMemory: link_top_k must be None or an integer ≥ 1, got {link_top_k!r}")
        self.slots, self.width, self.read_heads = slots, width, read_heads
        self.link_top_k = link_top_k
        self.key_masking, self.deallocation, self.link_sharpness = key_masking, deallocation, link_sharpness

    @property
    def Interface(self) -> type:  # noqa: N802 (the name every device's interface type has)
        return _interface_type(tuple(self.interface_fields()))

    def interface_fields(self) -> dict[str, InterfaceField]:
        r, w = self.read_heads, self.width
        fields = {
            "read_k": InterfaceField((r, w), "identity"),
            "read_beta": InterfaceField((r,), "oneplus"),
            "write_k": InterfaceField((1, w), "identity"),
            "write_beta": InterfaceField((1,), "oneplus"),
            "e": InterfaceField((w,), "sigmoid"),
            "v": InterfaceField((w,), "identity"),
            "f": InterfaceField((r,), "sigmoid"),
            "g_a": InterfaceField((), "sigmoid"),
            "g_w": InterfaceField((), "sigmoid"),
            "pi": InterfaceField((r, len(READ_MODES)), "softmax"),
        }
        if self.key_masking:
            fields["read_m"] = InterfaceField((r, w), "sigmoid")
            fields["write_m"] = InterfaceField((1, w), "sigmoid")
        if self.link_sharpness:
            fields["s_f"] = InterfaceField((r,), "oneplus")
            fields["s_b"] = InterfaceField((r,), "oneplus")
        return fields

    @property
    def read_size(self) -> int:
        return self.read_heads * self.width

    def initial_state(self, batch: int, *, device=None, dtype=None) -> DNCState:
        """Memory at `MEMORY_INIT`; usage, links, precedence and weightings zero."""
        n, r = self.slots, self.read_heads
        return DNCState(
            memory=torch.full((batch, n, self.width), MEMORY_INIT, device=device, dtype=dtype),
            usage=torch.zeros(batch, n, device=device, dtype=dtype),
            linkage=(initial_linkage(batch, n, device=device, dtype=dtype) if self.link_top_k is None
                     else initial_sparse_linkage(batch, n, self.link_top_k, device=device, dtype=dtype)),
            read_weights=torch.zeros(batch, r, n, device=device, dtype=dtype),
            write_weights=torch.zeros(batch, n, device=device, dtype=dtype),
        )

    def forward(self, interface: Any, state: DNCState) -> tuple[torch.Tensor, DNCState]:
        """One step: free, allocate, write, link, read (the module docstring's equations).

        Args:
            interface: a `self.Interface` (shapes in the class docstring).
            state: a `DNCState`.
        Returns:
            the reads (B, R·W), head i's word at [:, i·W:(i+1)·W], and the new state.
        """
        i = interface
        read_mask = i.read_m if self.key_masking else None
        write_mask = i.write_m if self.key_masking else None

        psi = retention(i.f, state.read_weights)  # (B, N)
        usage = update_usage(state.usage, state.write_weights, psi)  # (B, N)
        allocation = allocation_weights(usage)  # (B, N)
        write_content = content_weights(state.memory, i.write_k, i.write_beta, write_mask)[:, 0]  # (B, N)
        g_a, g_w = i.g_a.unsqueeze(-1), i.g_w.unsqueeze(-1)  # (B, 1) each
        write_weights = g_w * (g_a * allocation + (1 - g_a) * write_content)  # (B, N)

        memory = state.memory * psi.unsqueeze(-1) if self.deallocation else state.memory  # (B, N, W)
        memory = _EraseAdd.apply(memory, write_weights, i.e, i.v)  # (B, N, W)

        # L_t, p_t and f_t = L_t w^r_{t−1}, b_t = L_tᵀ w^r_{t−1} in one pass over the N×N links
        # (memory.linkage's update_linkage + directional_weights, fused; Triton on CUDA), or over
        # the K kept entries per row of the sparse link matrix
        step = linkage_step if self.link_top_k is None else sparse_linkage_step
        linkage, forward, backward = step(state.linkage, write_weights, state.read_weights)  # (B, R, N) each
        if self.link_sharpness:
            forward, backward = sharpen_links(forward, i.s_f), sharpen_links(backward, i.s_b)
        read_content = content_weights(memory, i.read_k, i.read_beta, read_mask)  # (B, R, N)
        pi = i.pi.unsqueeze(-1)  # (B, R, 3, 1)
        read_weights = pi[:, :, 0] * backward + pi[:, :, 1] * read_content + pi[:, :, 2] * forward  # (B, R, N)
        reads = torch.bmm(read_weights, memory)  # (B, R, W): r^i = M_tᵀ w^{r,i}
        return reads.flatten(1), DNCState(memory, usage, linkage, read_weights, write_weights)  # (B, R·W)

    def harden(self, interface: Any) -> Any:
        """The hard DNC's controls (module docstring): e, f, g^a, g^w and the masks rounded to
        {0, 1}; π one-hot at its argmax; β^r, β^w set to `HARD_STRENGTH`. Keys and the write
        vector are data and stay as they are; so do the sharpness exponents, which leave the
        one-hot link distributions of hard writes unchanged whatever their value."""
        hard = {name: hard_gate(getattr(interface, name)) for name in ("e", "f", "g_a", "g_w")}
        hard["read_beta"] = torch.full_like(interface.read_beta, HARD_STRENGTH)
        hard["write_beta"] = torch.full_like(interface.write_beta, HARD_STRENGTH)
        hard["pi"] = hard_choice(interface.pi)  # (B, R, 3)
        if self.key_masking:
            hard["read_m"], hard["write_m"] = hard_gate(interface.read_m), hard_gate(interface.write_m)
        return interface._replace(**hard)
