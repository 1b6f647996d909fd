"""The Neural Turing Machine's memory (Graves, Wayne & Danihelka 2014, §3).

Notation (docs/NOTATION.md): B batch, N slots, W word width, R read heads, Hw write heads,
S = 2·r + 1 shift offsets for a shift range r.

Each head turns its controls (k, β, g, s, γ) into a weighting over the N slots by the
addressing chain of §3.3, composed from `diffvm.memory.addressing` (eqs. 7–9 in one pass by
`diffvm.interp.kernels.location_weights`, the same function):

    w^c = C(M, k, β)                         content (eqs. 5–6)
    w^g = g·w^c + (1 − g)·w_{t−1}            interpolation with the head's last weighting (eq. 7)
    w̃   = w^g ⊛ s                            circular shift over the offsets −r … +r (eq. 8)
    w   = w̃^γ / Σ w̃^γ                        sharpening (eq. 9)

One step (`NTMMemory.forward`):

1. the write heads address the previous memory M_{t−1};
2. the write (eqs. 3–4, `diffvm.interp.kernels.write_and_read`), all write heads at once: every
   head's erase, then every head's add,

       M_t = M_{t−1} ⊙ Π_h (1 − w^w_h e_hᵀ) + Σ_h w^w_h a_hᵀ,

   which is the paper's "erasures in any order, additions in any order", and lets no write head
   erase what another adds in the same step;
3. the read heads address the new memory M_t, so a read can find by content a word written
   this step (the DNC's order);
4. the reads r_h = Σ_i w^r_h(i)·M_t(i) (eq. 2), flattened to (B, R·W).

The state holds no reads: a step returns them, and a controller keeps what it needs.

On the machine the memory is an array addressed by `Pointer[N]` values: `read(p) -> Vector[W]`
reads Σ_i p(i)·M(i) and `write(p, v) -> Vector[W]` (returning v) overwrites, the write of eqs. 3–4
with e = 1, a = v and w = π[write]·p. The hard interpreter's memory is a tuple of rows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from diffvm.interp.device import Device, DeviceOp, InterfaceField, hard_choice, hard_gate
from diffvm.interp.kernels import location_weights, write_and_read
from diffvm.interp.types import Pointer, Vector
from diffvm.memory.addressing import content_weights

__all__ = ["CONSTANT_INIT", "INITS", "NTMMemory", "NTMInterface", "NTMState", "RANDOM_INIT_STD", "erase_add"]

# Collier & Beel 2018: every cell at a small constant converges about twice as fast as learned or
# random initial memory; a nonzero constant also keeps every row's cosine similarity defined.
CONSTANT_INIT = 1e-6
# The scale of the "random" initial memory: Collier & Beel's random scheme draws N(0, 0.5).
RANDOM_INIT_STD = 0.5
INITS = ("constant", "learned", "random")


class NTMInterface(NamedTuple):
    """What a controller emits for the NTM each step, write heads' fields first, then read heads'.

    Write heads (Hw of them): `write_k` (B, Hw, W) key k; `write_beta` (B, Hw) key strength
    β ≥ 1; `write_g` (B, Hw) interpolation gate g in [0, 1]; `write_s` (B, Hw, S) shift weighting
    s on the simplex, s[..., r] the weight of offset 0; `write_gamma` (B, Hw) sharpening γ ≥ 1;
    `e` (B, Hw, W) erase vector in [0, 1]; `a` (B, Hw, W) add vector.
    Read heads (R of them): `read_k` (B, R, W), `read_beta` (B, R), `read_g` (B, R),
    `read_s` (B, R, S), `read_gamma` (B, R), the same controls as the write heads'.
    """

    write_k: torch.Tensor
    write_beta: torch.Tensor
    write_g: torch.Tensor
    write_s: torch.Tensor
    write_gamma: torch.Tensor
    e: torch.Tensor
    a: torch.Tensor
    read_k: torch.Tensor
    read_beta: torch.Tensor
    read_g: torch.Tensor
    read_s: torch.Tensor
    read_gamma: torch.Tensor


class NTMState(NamedTuple):
    """The NTM's state between steps.

    Attributes:
        memory: (B, N, W) M.
        read_weights: (B, R, N) the read heads' last weightings w^r_{t−1}.
        write_weights: (B, Hw, N) the write heads' last weightings w^w_{t−1}.
    """

    memory: torch.Tensor
    read_weights: torch.Tensor
    write_weights: torch.Tensor


def _address(memory, k, beta, g, s, gamma, previous):
    """The addressing chain (eqs. 5–9) for H heads: memory (B, N, W), k (B, H, W), β, g, γ (B, H),
    s (B, H, S), previous (B, H, N) -> (B, H, N). Eqs. 7–9 are one fused op: `interpolate`, `shift`
    and `sharpen` of diffvm.memory.addressing in one pass (diffvm.interp.kernels.location_weights)."""
    content = content_weights(memory, k, beta)  # (B, H, N)
    return location_weights(content, previous, g, s, gamma)


def erase_add(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """The write of eqs. 3–4 by H heads at once: M ⊙ Π_h (1 − w_h e_hᵀ) + Σ_h w_h a_hᵀ.

    Args:
        memory: (B, N, W) M_{t−1}.
        weights: (B, H, N) w, each head's write weighting.
        erase: (B, H, W) e in [0, 1].
        add: (B, H, W) a.
    Returns:
        (B, N, W) M_t.
    """
    no_reads = weights.new_zeros(weights.shape[0], 0, weights.shape[2])  # (B, 0, N)
    return write_and_read(memory, weights, erase, add, no_reads)[0]  # the fused write, R = 0


class NTMMemory(Device):
    """NTM memory: N slots of width W, R read heads and Hw write heads with content and location
    addressing, erase/add writes.

    Args:
        slots: N ≥ 1.
        width: W ≥ 1.
        read_heads: R ≥ 1.
        write_heads: Hw ≥ 1.
        shift_range: r ≥ 0; the shift weighting covers the offsets −r … +r (S = 2·r + 1).
        init: the initial memory: "constant" (every cell `CONSTANT_INIT`), "learned" (an (N, W)
            parameter starting at `CONSTANT_INIT`, shared by the batch) or "random" (each
            example's memory drawn from N(0, `RANDOM_INIT_STD`²) in `initial_state`, from the
            generator it is given).

    Every head starts attending to slot 0 (a one-hot weighting), so a head driven by location
    alone (g = 0) from the first step moves a definite position, as a Turing machine's head does.
    """

    Interface = NTMInterface
    State = NTMState

    def __init__(self, slots: int, width: int, read_heads: int = 1, write_heads: int = 1,
                 shift_range: int = 1, init: str = "constant"):
        super().__init__()
        for name, value, least in [("slots", slots, 1), ("width", width, 1), ("read_heads", read_heads, 1),
                                   ("write_heads", write_heads, 1), ("shift_range", shift_range, 0)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"NTMMemory: {name} must be an integer ≥ {least}, got {value!r}")
        if init not in INITS:
            raise ValueError(f"NTMMemory: init must be one of {INITS}, got {init!r}")
        self.slots, self.width = slots, width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.shift_range, self.init = shift_range, init
        if init == "learned":
            self.memory_init = nn.Parameter(torch.full((slots, width), CONSTANT_INIT))  # (N, W)

    def interface_fields(self) -> dict[str, InterfaceField]:
        w, s = self.width, 2 * self.shift_range + 1
        head = lambda p, h: {  # the addressing controls of h heads, field names prefixed by p
            f"{p}k": InterfaceField((h, w), "identity"),
            f"{p}beta": InterfaceField((h,), "oneplus"),
            f"{p}g": InterfaceField((h,), "sigmoid"),
            f"{p}s": InterfaceField((h, s), "softmax"),
            f"{p}gamma": InterfaceField((h,), "oneplus"),
        }
        hw = self.write_heads
        return {**head("write_", hw), "e": InterfaceField((hw, w), "sigmoid"),
                "a": InterfaceField((hw, w), "identity"), **head("read_", self.read_heads)}

    @property
    def read_size(self) -> int:
        return self.read_heads * self.width

    def initial_state(self, batch: int, *, device=None, dtype=None,
                      generator: torch.Generator | None = None) -> NTMState:
        """Memory per `init`, every head's weighting one-hot at slot 0.

        Args:
            generator: the source of the "random" initial memory (torch's global generator when
                None); on the device the memory is made on. Unused by the other inits.
        """
        if self.init == "learned":
            dtype = dtype or self.memory_init.dtype
            device = device or self.memory_init.device
            memory = self.memory_init.to(device=device, dtype=dtype).expand(batch, -1, -1)  # (B, N, W)
        elif self.init == "random":
            memory = RANDOM_INIT_STD * torch.randn(batch, self.slots, self.width, generator=generator,
                                                   device=device, dtype=dtype)  # (B, N, W)
        else:
            memory = torch.full((batch, self.slots, self.width), CONSTANT_INIT, device=device, dtype=dtype)
        slot0 = torch.zeros(batch, 1, self.slots, device=memory.device, dtype=memory.dtype)  # (B, 1, N)
        slot0[..., 0] = 1
        return NTMState(memory, slot0.expand(-1, self.read_heads, -1),  # (B, R, N)
                        slot0.expand(-1, self.write_heads, -1))  # (B, Hw, N)

    def forward(self, interface: NTMInterface, state: NTMState) -> tuple[torch.Tensor, NTMState]:
        """One step: write heads address M_{t−1} and write, read heads address and read M_t.

        Args:
            interface: an `NTMInterface` (shapes in its docstring).
            state: an `NTMState`.
        Returns:
            the reads (B, R·W), head r's word at [:, r·W:(r+1)·W], and the new state.
        """
        i = interface
        write_weights = _address(state.memory, i.write_k, i.write_beta, i.write_g, i.write_s,
                                 i.write_gamma, state.write_weights)  # (B, Hw, N)
        memory = erase_add(state.memory, write_weights, i.e, i.a)  # (B, N, W)
        read_weights = _address(memory, i.read_k, i.read_beta, i.read_g, i.read_s,
                                i.read_gamma, state.read_weights)  # (B, R, N)
        reads = torch.einsum("brn,bnw->brw", read_weights, memory)  # (B, R, W): eq. 2
        return reads.flatten(1), NTMState(memory, read_weights, write_weights)  # (B, R·W)

    def harden(self, interface: NTMInterface) -> NTMInterface:
        """Round the location controls: g to {0, 1}, s to a one-hot at its argmax, e to {0, 1}.

        What makes a head's weighting one-hot: with g = 0 the head keeps its last weighting, a
        one-hot s rotates it by one offset exactly, and sharpening keeps a one-hot one-hot (to
        within tiny^γ, see `sharpen`); from the one-hot initial weighting, such a head is an
        integer position moving by the chosen offset mod N, and with 0/1 erases its write is
        `row = row·(1 − e) + a`. With g = 1 the weighting is the content softmax, left soft: k, β,
        γ and a are unchanged, since no finite β makes it one-hot where rows tie (the constant
        initial memory ties them all).
        A gate of exactly 0.5 hardens to 0 (`hard_gate`: open above one half).
        """
        return interface._replace(write_g=hard_gate(interface.write_g), read_g=hard_gate(interface.read_g),
                                  write_s=hard_choice(interface.write_s), read_s=hard_choice(interface.read_s),
                                  e=hard_gate(interface.e))

    # --- machine ops ----------------------------------------------------------------------
    def ops(self) -> tuple[DeviceOp, ...]:
        pointer, vector = Pointer[self.slots], Vector[self.width]
        return (DeviceOp("read", (pointer,), vector), DeviceOp("write", (pointer, vector), vector))

    def machine_step(self, weights, args, state):
        """Read M_{t−1} at p; overwrite with w = π[write]·p (e = 1, a = v); heads untouched."""
        (read_at,), (write_at, value) = args
        w = (weights[:, 1:2] * write_at).unsqueeze(1)  # (B, 1, N)
        # the read of M_{t−1} (eq. 2) and the write in one pass over the memory
        memory, read = write_and_read(state.memory, w, torch.ones_like(value).unsqueeze(1), value.unsqueeze(1),
                                      read_at.unsqueeze(1), reads_before_write=True)  # (B, N, W), (B, 1, W)
        return [read[:, 0], value], state._replace(memory=memory)

    def plain_initial(self) -> tuple:
        if self.init == "random":
            raise ValueError("NTMMemory(init='random') has no one plain initial memory; pass "
                             "device_states= to the interpreter")
        rows = self.initial_state(1, dtype=torch.float64).memory[0]  # (N, W)
        return tuple(tuple(row.tolist()) for row in rows)

    def plain_apply(self, op, rows, *args):
        if op == "read":
            return rows[args[0]], rows
        address, value = args
        return value, (*rows[:address], tuple(value), *rows[address + 1:])

