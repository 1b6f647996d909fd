"""NRAM: pointer registers over a random-access memory (Kurach, Andrychowicz & Sutskever 2015).

Notation (docs/NOTATION.md): B batch, M the modulus (values 0 … M−1, and as many memory cells),
G registers. Every value is a distribution over 0 … M−1 (`Pointer[M]`): a register r_g is (M,),
a memory cell 𝓜[i] is (M,), the memory (M, M).

**Modules** (the paper's gates, §3). Each is the exact distribution of an integer function of
independent arguments a, b, computed from the distributions without sampling:

    ZERO() = δ0                            INC(a)[c] = a[c − 1]       DEC(a)[c] = a[c + 1]
    ADD(a, b)[c] = Σ_{i+j ≡ c} a[i]·b[j]   SUB(a, b)[c] = Σ_{i−j ≡ c} a[i]·b[j]   (mod M)
    LT(a, b) = P(a < b)·δ1 + (1 − P(a < b))·δ0, likewise LE (a ≤ b) and EQ (a = b)
    MIN(a, b)[c] = P(min(a, b) = c),       MAX(a, b)[c] = P(max(a, b) = c)
    READ(p) = Σ_i p[i]·𝓜[i]
    WRITE(p, a): 𝓜[i] ← (1 − p[i])·𝓜[i] + p[i]·a   (the paper's WRITE returns 0; here it returns nothing)

`nram_ops(M)` registers the arithmetic and comparison modules as machine ops `nram{M}::…` over
`Pointer[M]`, each with a hard meaning on integers. A pure op needs an input to follow the batch
(the registry refuses ops without inputs), so the ZERO op takes one argument it ignores, as the
paper writes every module m(a, b) and its constant modules ignore both; `nram_constants(M)` gives
ZERO, ONE and TWO as machine constants as well.

**On the machine** the device exposes READ and WRITE as ops, `read(p) -> Pointer[M]` and
`write(p, a) -> Pointer[M]` (returning a, the value written): the machine's `Pointer[M]`
registers take the place of the device's own, and `nram_ops(M)` supplies the other modules.
With op probabilities π, a step reads the memory as it was and writes with gate π[write]; the
hard interpreter's memory is a list of ints.

**The device** `PointerRegisters` holds the memory and the registers. The paper's controller
picks, every step, each module's arguments as softmaxes over the registers and the outputs of
the modules before it (its l_i, r_i), then each register's new value as a softmax over the
registers and all module outputs (its c_i). Here the choices are fewer but of the same kind:

    read_pointer   (G,)    softmax over registers: READ's argument p = Σ_g read_pointer[g]·r_g
    write_pointer  (G,)    softmax over registers: WRITE's address p
    write_value    (G,)    softmax over registers: WRITE's value a
    write_gate     ()      sigmoid g^w: the write happens with probability g^w (the paper's WRITE
                           has no gate: it writes every step)
    update         (G, 5)  per register, softmax over its new value's candidates, in the order
                           of `UPDATE_CHOICES`: keep r_g, READ's result, INC(r_g), DEC(r_g), ZERO

One step: READ from the memory as it was (READ is the first module of the paper's circuit and
WRITE the last), WRITE, then r_g ← Σ_k update[g, k]·candidate_k. The read a controller gets is
READ's result and the registers after the step, flattened; the paper's controller sees only
P(r_g = 0), which is `registers[..., 0]` within it. The paper's stop probability f_t and its
per-step loss belong to the controller and trainer, not to this device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from diffvm.interp.device import Device, DeviceOp, InterfaceField, hard_choice, hard_gate
from diffvm.interp.registry import Op, primitive
from diffvm.interp.types import Pointer

__all__ = [
    "UPDATE_CHOICES",
    "PointerRegisters",
    "nram_constants",
    "nram_ops",
    "read_memory",
    "write_memory",
]

# The candidates of a register's new value, in the order of the last axis of `update`.
UPDATE_CHOICES = ("keep", "read", "inc", "dec", "zero")


# --------------------------------------------------------------------------------------------
# Modules on distributions: (B, M) each, or (..., M) where they act elementwise over registers


def _delta(value: int, like: torch.Tensor) -> torch.Tensor:
    """δ_value, shaped, typed and placed like `like` (..., M)."""
    index = torch.full(like.shape[:-1], value, dtype=torch.long, device=like.device)
    return F.one_hot(index, like.shape[-1]).to(like.dtype)  # (..., M)


def _zero(a: torch.Tensor) -> torch.Tensor:
    """ZERO: δ0 (..., M); `a` only gives the shape, as the paper's constant modules ignore theirs."""
    return _delta(0, a)


def _inc(a: torch.Tensor) -> torch.Tensor:
    """INC(a)[c] = a[c − 1 mod M]: (..., M)."""
    return torch.roll(a, 1, dims=-1)


def _dec(a: torch.Tensor) -> torch.Tensor:
    """DEC(a)[c] = a[c + 1 mod M]: (..., M)."""
    return torch.roll(a, -1, dims=-1)


def _circular_convolution(a: torch.Tensor, b: torch.Tensor, sign: int) -> torch.Tensor:
    """out[c] = Σ_i a[i]·b[sign·(c − i) mod M]: ADD for sign +1 (j = c − i), SUB for −1 (j = i − c).

    Args:
        a, b: (B, M).
    Returns:
        (B, M).
    """
    m = a.shape[-1]
    c = torch.arange(m, device=a.device)
    partner = (sign * (c.unsqueeze(1) - c.unsqueeze(0))) % m  # (M, M): [c, i] -> j
    return torch.einsum("bi,bci->bc", a, b[:, partner])  # b[:, partner]: (B, M, M)


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ADD(a, b): (B, M)."""
    return _circular_convolution(a, b, 1)


def _sub(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SUB(a, b): (B, M)."""
    return _circular_convolution(a, b, -1)


def _below(x: torch.Tensor) -> torch.Tensor:
    """Σ_{j<i} x[j] for every i: (B, M). A sum of nonnegative terms, never 1 − (a sum), so a
    probability built from it cannot come out a round-off below 0."""
    return F.pad(torch.cumsum(x, -1)[..., :-1], (1, 0))


def _above(x: torch.Tensor) -> torch.Tensor:
    """Σ_{j>i} x[j] for every i: (B, M), a sum of nonnegative terms like `_below`."""
    return _below(x.flip(-1)).flip(-1)


def _order(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """P(a < b), P(a = b), P(a > b) for independent a, b (B, M): three (B,)."""
    less = (a * _above(b)).sum(-1)
    equal = (a * b).sum(-1)
    greater = (a * _below(b)).sum(-1)
    return less, equal, greater


def _truth(true: torch.Tensor, false: torch.Tensor, m: int) -> torch.Tensor:
    """P(true)·δ1 + P(false)·δ0 (the paper's comparison result) from (B,) probabilities: (B, M)."""
    return F.pad(torch.stack([false, true], dim=-1), (0, m - 2))  # (B, M)


def _lt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LESS-THAN(a, b): (B, M)."""
    less, equal, greater = _order(a, b)
    return _truth(less, equal + greater, a.shape[-1])


def _le(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LESS-OR-EQUAL-THAN(a, b): (B, M)."""
    less, equal, greater = _order(a, b)
    return _truth(less + equal, greater, a.shape[-1])


def _eq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """EQUALITY-TEST(a, b): (B, M)."""
    less, equal, greater = _order(a, b)
    return _truth(equal, less + greater, a.shape[-1])


def _min(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MIN(a, b)[c] = a[c]·P(b ≥ c) + b[c]·P(a > c): (B, M)."""
    return a * (b + _above(b)) + b * _above(a)


def _max(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MAX(a, b)[c] = a[c]·P(b ≤ c) + b[c]·P(a < c): (B, M)."""
    return a * (b + _below(b)) + b * _below(a)


# name -> (arity, soft meaning on distributions, meaning on integer tensors x, y given the modulus m)
_MODULES = {
    "zero": (1, _zero, lambda m, x: torch.zeros_like(x)),
    "inc": (1, _inc, lambda m, x: (x + 1) % m),
    "dec": (1, _dec, lambda m, x: (x - 1) % m),
    "add": (2, _add, lambda m, x, y: (x + y) % m),
    "sub": (2, _sub, lambda m, x, y: (x - y) % m),
    "lt": (2, _lt, lambda m, x, y: (x < y).long()),
    "le": (2, _le, lambda m, x, y: (x <= y).long()),
    "eq": (2, _eq, lambda m, x, y: (x == y).long()),
    "min": (2, _min, lambda m, x, y: torch.minimum(x, y)),
    "max": (2, _max, lambda m, x, y: torch.maximum(x, y)),
}
_NRAM_OPS: dict[int, tuple[Op, ...]] = {}


def _check_modulus(modulus: int, what: str) -> None:
    # M ≥ 2: the comparisons answer δ1 or δ0, and the memory needs a cell to point at besides 0.
    if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 2:
        raise ValueError(f"{what}: modulus must be an int ≥ 2, got {modulus!r}")


def _hard_meaning(integer_fn, modulus: int, arity: int):
    """The discrete meaning on hard-valued (B, M) inputs: the integer function on the argmaxes,
    one-hot encoded (B, M). Its arity is the module's, as the registry checks."""

    def encode(*args: torch.Tensor) -> torch.Tensor:
        value = integer_fn(modulus, *(x.argmax(-1) for x in args))  # (B,)
        return F.one_hot(value, modulus).to(args[0].dtype)  # (B, M)

    return (lambda a: encode(a)) if arity == 1 else (lambda a, b: encode(a, b))


def nram_ops(modulus: int) -> tuple[Op, ...]:
    """The NRAM modules over `Pointer[modulus]` as ops `nram{M}::zero, inc, dec, add, sub, lt,
    le, eq, min, max`, registered on the first call; later calls return the same ops.

    Raises:
        ValueError: `modulus` is not an int ≥ 2.
    """
    _check_modulus(modulus, "nram_ops")
    if modulus not in _NRAM_OPS:
        p = Pointer[modulus]
        ops = []
        for name, (arity, soft, integer_fn) in _MODULES.items():
            ops.append(primitive(f"nram{modulus}::{name}", inputs=(p,) * arity, output=p,
                                 hard=_hard_meaning(integer_fn, modulus, arity))(soft))
        _NRAM_OPS[modulus] = tuple(ops)
    return _NRAM_OPS[modulus]


def nram_constants(modulus: int) -> dict[str, tuple[Pointer, int]]:
    """The paper's constant modules ZERO, ONE, TWO (mod M) as `Machine(..., constants=...)`."""
    _check_modulus(modulus, "nram_constants")
    return {name: (Pointer[modulus], value % modulus) for value, name in enumerate(("zero", "one", "two"))}


# --------------------------------------------------------------------------------------------
# Memory access


def read_memory(memory: torch.Tensor, pointer: torch.Tensor) -> torch.Tensor:
    """READ(p) = Σ_i p[i]·𝓜[i].

    Args:
        memory: (B, M, M) 𝓜, cell i's value distribution in row i.
        pointer: (B, M) p, a distribution over cells.
    Returns:
        (B, M), a distribution when p and every cell are.
    """
    return torch.einsum("bi,bim->bm", pointer, memory)  # (B, M)


def write_memory(memory: torch.Tensor, pointer: torch.Tensor, value: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """WRITE(p, a) under a gate: 𝓜[i] ← (1 − w[i])·𝓜[i] + w[i]·a with w = g^w·p.

    Args:
        memory: (B, M, M) 𝓜.
        pointer: (B, M) p, the address.
        value: (B, M) a, the value written.
        gate: (B,) g^w in [0, 1].
    Returns:
        (B, M, M). Every cell becomes a convex combination of itself and a, so it stays a
        distribution.
    """
    w = (gate.unsqueeze(-1) * pointer).unsqueeze(-1)  # (B, M, 1)
    return (1 - w) * memory + w * value.unsqueeze(1)  # (B, M, M)


def _select(registers: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_g weights[g]·r_g: registers (B, G, M), weights (B, G) -> (B, M)."""
    return torch.einsum("bg,bgm->bm", weights, registers)  # (B, M)


# --------------------------------------------------------------------------------------------
# The device


class PointerRegistersInterface(NamedTuple):
    """One step's controls (module docstring).

    Attributes:
        read_pointer: (B, G) READ's pointer register, a distribution.
        write_pointer: (B, G) WRITE's address register, a distribution.
        write_value: (B, G) WRITE's value register, a distribution.
        write_gate: (B,) g^w in [0, 1].
        update: (B, G, 5) each register's distribution over `UPDATE_CHOICES`.
    """

    read_pointer: torch.Tensor
    write_pointer: torch.Tensor
    write_value: torch.Tensor
    write_gate: torch.Tensor
    update: torch.Tensor


class PointerRegistersState(NamedTuple):
    """The memory and the registers between steps.

    Attributes:
        memory: (B, M, M) 𝓜, cell i's value distribution in row i.
        registers: (B, G, M) r_1 … r_G.
    """

    memory: torch.Tensor
    registers: torch.Tensor


class PointerRegisters(Device):
    """NRAM's memory and registers driven through pointer registers (module docstring).

    Args:
        modulus: M, the number of values and of memory cells (≥ 2).
        registers: G, the number of registers (≥ 1).
    """

    Interface = PointerRegistersInterface
    State = PointerRegistersState

    def __init__(self, modulus: int, registers: int):
        super().__init__()
        _check_modulus(modulus, "PointerRegisters")
        if isinstance(registers, bool) or not isinstance(registers, int) or registers < 1:
            raise ValueError(f"PointerRegisters: registers must be an int ≥ 1, got {registers!r}")
        self.modulus = modulus
        self.registers = registers

    def extra_repr(self) -> str:
        return f"modulus={self.modulus}, registers={self.registers}"

    def interface_fields(self) -> dict[str, InterfaceField]:
        g = self.registers
        return {
            "read_pointer": InterfaceField((g,), "softmax"),
            "write_pointer": InterfaceField((g,), "softmax"),
            "write_value": InterfaceField((g,), "softmax"),
            "write_gate": InterfaceField((), "sigmoid"),
            "update": InterfaceField((g, len(UPDATE_CHOICES)), "softmax"),
        }

    @property
    def read_size(self) -> int:
        """READ's result (M) and the registers (G·M)."""
        return self.modulus * (1 + self.registers)

    def initial_state(self, batch: int, *, device=None, dtype=None, memory=None) -> PointerRegistersState:
        """Registers all δ0; the memory δ of the given integers, or all δ0.

        Args:
            memory: None, or an integer tensor (B, M) of cell values in [0, M): the task's input.
        """
        dtype = dtype or torch.get_default_dtype()
        m = self.modulus
        if memory is None:
            memory = torch.zeros(batch, m, dtype=torch.long, device=device)
        elif memory.shape != (batch, m) or memory.is_floating_point():
            raise ValueError(f"PointerRegisters.initial_state: memory must be an integer tensor of shape "
                             f"({batch}, {m}), got {memory.dtype} {tuple(memory.shape)}")
        elif ((memory < 0) | (memory >= m)).any():
            raise ValueError(f"PointerRegisters.initial_state: memory values must lie in [0, {m})")
        cells = F.one_hot(memory.to(device=device, dtype=torch.long), m).to(dtype)  # (B, M, M)
        registers = torch.zeros(batch, self.registers, m, dtype=dtype, device=cells.device)
        registers[..., 0] = 1  # δ0
        return PointerRegistersState(cells, registers)

    def forward(self, interface: PointerRegistersInterface, state: PointerRegistersState):
        """One step: READ, WRITE, then the register update.

        Returns:
            read: (B, M·(1 + G)), READ's result then the new registers, flattened.
            state: the new `PointerRegistersState`.
        """
        registers = state.registers  # (B, G, M)
        read = read_memory(state.memory, _select(registers, interface.read_pointer))  # (B, M)
        memory = write_memory(
            state.memory,
            _select(registers, interface.write_pointer),
            _select(registers, interface.write_value),
            interface.write_gate,
        )
        candidates = torch.stack(  # in the order of UPDATE_CHOICES
            [registers, read.unsqueeze(1).expand_as(registers), _inc(registers), _dec(registers), _zero(registers)],
            dim=2,
        )  # (B, G, 5, M)
        registers = torch.einsum("bgk,bgkm->bgm", interface.update, candidates)  # (B, G, M)
        out = torch.cat([read, registers.flatten(1)], dim=-1)  # (B, M·(1 + G))
        return out, PointerRegistersState(memory, registers)

    def harden(self, interface: PointerRegistersInterface) -> PointerRegistersInterface:
        """Each softmax choice one-hot at its argmax, the gate 0/1."""

        return PointerRegistersInterface(
            hard_choice(interface.read_pointer),
            hard_choice(interface.write_pointer),
            hard_choice(interface.write_value),
            hard_gate(interface.write_gate),
            hard_choice(interface.update),
        )

    # --- machine ops ----------------------------------------------------------------------
    def ops(self) -> tuple[DeviceOp, ...]:
        p = Pointer[self.modulus]
        return (DeviceOp("read", (p,), p), DeviceOp("write", (p, p), p))

    def machine_step(self, weights, args, state):
        """READ(p) of the memory as it was; WRITE(p, a) with gate π[write]; registers untouched."""
        (read_at,), (write_at, value) = args
        read = read_memory(state.memory, read_at)  # (B, M)
        memory = write_memory(state.memory, write_at, value, weights[:, 1])  # (B, M, M)
        return [read, value], state._replace(memory=memory)

    def plain_initial(self) -> list[int]:
        """Every cell 0, as `initial_state` without a memory."""
        return [0] * self.modulus

    def plain_apply(self, op, memory, *args):
        if op == "read":
            return memory[args[0]], memory
        address, value = args
        return value, [*memory[:address], value, *memory[address + 1:]]

