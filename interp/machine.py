"""The soft machine: per-type registers, operands by soft attention, one differentiable step.

At step t the controller emits an `Instruction`: π_t over the OpSet's ops and, for every operand
slot (τ, j), a distribution α over the *sources* of type τ available at step t:

    sources(τ, t) = [inputs of type τ] + [constants of type τ] + [s0, s1, …, s_{t−1}]

where s0 is the register's initial value and s_k the register of type τ after step k (the
Neural Programmer "pipe": later steps read earlier results). The step

1. reads every slot: x_{τ,j} = Σ_s α_{τ,j}[s] · source_s;
2. runs every op on its slots' soft operands, for the whole batch;
3. updates every register: r_t^τ = Σ_{k: out(k)=τ} π_t[k]·y_k + (1 − Σ_{k: out(k)=τ} π_t[k])·r_{t−1}^τ,
   so probability spent on ops of other types leaves a register as it was.

With one-hot instructions and hard-valued inputs this is exactly the hard interpreter's step
(`diffvm.programs.run`), up to each type's hardening of smooth surrogates.

Devices (`diffvm.interp.device.Device`: stacks, memories, registers) plug in by name: the machine
adds each device's ops to its OpSet as `<device>::<op>`, keeps the device states in its state,
and in step 2 lets each device run its own ops with their probabilities (`Device.machine_step`);
their results are merged in step 3 like any op's.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from diffvm.interp.device import Device, DeviceOp
from diffvm.interp.registry import OpSet
from diffvm.interp.types import ValueType

__all__ = ["Source", "Instruction", "MachineState", "Machine", "STEP_SOURCE"]

# Step results are referred to as s0 (the initial register), s1, s2, …; no input may look like one.
STEP_SOURCE = re.compile(r"^s(\d+)$")


class Source(NamedTuple):
    """Where an operand comes from: `("input", name)`, `("const", name)` or `("step", k)`."""

    kind: str
    key: str | int

    def __str__(self) -> str:
        return f"s{self.key}" if self.kind == "step" else str(self.key)


class Instruction(NamedTuple):
    """One step's soft instruction.

    Attributes:
        op: (B, K) π_t, a distribution over the OpSet's K ops.
        operands: one (B, S) distribution per operand slot of the OpSet, over the S sources of
            the slot's type at this step (`Machine.sources`).
    """

    op: torch.Tensor
    operands: tuple[torch.Tensor, ...]

    def expand(self, batch: int) -> Instruction:
        """The instruction of a batch of one, shared by `batch` examples (a view, no copy)."""
        return Instruction(self.op.expand(batch, -1), tuple(x.expand(batch, -1) for x in self.operands))


class MachineState(NamedTuple):
    """The machine between steps.

    Attributes:
        step: how many steps have run.
        tapes: per type τ, (B, S, *shape) every source of τ so far (inputs, constants, s0…s_t).
        devices: per device name, its state.
    """

    step: int
    tapes: dict[ValueType, torch.Tensor]
    devices: Mapping[str, Any] = {}  # never mutated: each step builds a new dict

    def register(self, t: ValueType) -> torch.Tensor:
        """The register of type τ now: (B, *shape)."""
        return self.tapes[t][:, -1]


def _first_float_leaf(states) -> torch.Tensor | None:
    """The first floating-point tensor field of the given device states (NamedTuples), if any."""
    for state in states:
        for x in getattr(state, "_asdict", dict)().values():
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                return x
    return None


class Machine:
    """The soft machine for one program signature.

    Args:
        opset: the instruction set of pure ops.
        inputs: name -> type of each program input, in order.
        output: the type of the program's result (the register of that type after the last step).
        constants: name -> (type, plain value) of constants operands may read.
        devices: name -> device; its ops join the instruction set as `<name>::<op>`, after the
            pure ops (`self.opset` is the full instruction set a controller is built for).
    """

    def __init__(
        self,
        opset: OpSet,
        inputs: Mapping[str, ValueType],
        output: ValueType,
        constants: Mapping[str, tuple[ValueType, Any]] | None = None,
        devices: Mapping[str, Device] | None = None,
    ):
        if not isinstance(opset, OpSet):
            raise TypeError(f"Machine needs an OpSet, got {type(opset).__name__}")
        self.devices = dict(devices or {})
        device_ops = []
        for name, device in self.devices.items():
            if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"device name {name!r}: expected lower-case letters, digits and _")
            if not isinstance(device, Device):
                raise TypeError(f"device {name!r}: expected a Device, got {type(device).__name__}")
            device_ops += [op._replace(name=f"{name}::{op.name}", device=name) for op in device.ops()]
        self.opset = OpSet([*opset.ops, *device_ops]) if device_ops else opset
        # indices into self.opset of each device's ops, in the order of its ops()
        self._device_ops = {
            name: [k for k, o in enumerate(self.opset) if isinstance(o, DeviceOp) and o.device == name]
            for name in self.devices
        }
        self.inputs = dict(inputs)
        self.constants = dict(constants or {})
        self.output = output
        for name in [*self.inputs, *self.constants]:
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"machine input/constant name {name!r} is not an identifier")
            if STEP_SOURCE.match(name):
                raise ValueError(f"machine input/constant name {name!r} looks like a step reference")
        both = set(self.inputs) & set(self.constants)
        if both:
            raise ValueError(f"names used for both an input and a constant: {sorted(both)}")
        for name, t in self.inputs.items():
            if not isinstance(t, ValueType):
                raise TypeError(f"machine input {name!r}: expected a value type, got {t!r}")
        for name, spec in self.constants.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], ValueType)):
                raise TypeError(f"constant {name!r}: expected (type, value), got {spec!r}")
            spec[0].from_plain(spec[1])  # raises if the value does not fit the type
        if output not in self.opset.output_types:
            raise ValueError(f"no op of {self.opset!r} produces the output type {output}")
        self.types: tuple[ValueType, ...] = tuple(
            dict.fromkeys([*self.opset.types, *self.inputs.values(), output])
        )
        # ops writing each type: (indices into the OpSet)
        self._producers = {
            t: [k for k, o in enumerate(self.opset) if o.output == t] for t in self.types
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{n}: {t}" for n, t in self.inputs.items())
        return f"Machine({args}) -> {self.output} over {self.opset!r}"

    # --- sources ----------------------------------------------------------------------------
    def fixed_sources(self, t: ValueType) -> list[Source]:
        """Sources of type τ present at every step: inputs, then constants."""
        return [Source("input", n) for n, u in self.inputs.items() if u == t] + [
            Source("const", n) for n, (u, _) in self.constants.items() if u == t
        ]

    def sources(self, t: ValueType, step: int) -> list[Source]:
        """The sources an operand of type τ may read at step `step` (counted from 1)."""
        return self.fixed_sources(t) + [Source("step", k) for k in range(step)]

    def num_sources(self, t: ValueType, step: int) -> int:
        return len(self.fixed_sources(t)) + step

    # --- running ----------------------------------------------------------------------------
    def initial_state(
        self, inputs: Mapping[str, torch.Tensor], devices: Mapping[str, Any] | None = None, *,
        dtype: torch.dtype | None = None,
    ) -> MachineState:
        """The state before step 1, from a batch of inputs: name -> (B, *shape).

        Devices start from `devices[name]` where given (e.g. a memory holding the task's input),
        else from their `initial_state`. Registers take the inputs' dtype; a machine without
        inputs takes its batch, dtype and torch device from the first tensor of the device states
        given (an NRAM memory holding the task), else batch 1 and `dtype`, by default torch's
        default dtype.
        """
        missing = [n for n in self.inputs if n not in inputs]
        extra = [n for n in inputs if n not in self.inputs]
        if missing or extra:
            raise ValueError(f"machine inputs: missing {missing}, unexpected {extra}; "
                             f"expected {list(self.inputs)}")
        for n, t in self.inputs.items():
            t.check(inputs[n], what=f"machine input {n!r}")
        given = devices or {}
        first = inputs[next(iter(self.inputs))] if self.inputs else _first_float_leaf(given.values())
        batch = first.shape[0] if first is not None else 1
        device = first.device if first is not None else None
        dtype = first.dtype if first is not None else dtype or torch.get_default_dtype()
        for n in self.inputs:
            if inputs[n].shape[0] != batch:
                raise ValueError(f"machine input {n!r} has batch {inputs[n].shape[0]}, not {batch}")
        tapes = {}
        for t in self.types:
            fixed = [
                inputs[s.key] if s.kind == "input"
                else self._constant(s.key, batch, device=device, dtype=dtype)
                for s in self.fixed_sources(t)
            ]
            fixed.append(t.initial(batch, device=device, dtype=dtype))  # s0
            tapes[t] = torch.stack(fixed, dim=1)  # (B, S, *shape)
        unknown = set(given) - set(self.devices)
        if unknown:
            raise ValueError(f"initial device states for unknown devices {sorted(unknown)}; "
                             f"the machine has {sorted(self.devices)}")
        states = {
            name: given[name] if name in given else dev.initial_state(batch, device=device, dtype=dtype)
            for name, dev in self.devices.items()
        }
        return MachineState(0, tapes, states)

    def _constant(self, name: str, batch: int, *, device, dtype) -> torch.Tensor:
        t, value = self.constants[name]
        return t.from_plain(value, dtype=dtype).to(device).expand(batch, *t.shape)

    def step(self, instruction: Instruction, state: MachineState) -> MachineState:
        """One soft step (module docstring); returns the new state."""
        t_now = state.step + 1
        pi, alphas = instruction
        batch = next(iter(state.tapes.values())).shape[0]
        if pi.shape != (batch, len(self.opset)):
            raise ValueError(f"step {t_now}: op distribution has shape {tuple(pi.shape)}, "
                             f"expected ({batch}, {len(self.opset)})")
        if len(alphas) != len(self.opset.slots):
            raise ValueError(f"step {t_now}: {len(alphas)} operand distributions for "
                             f"{len(self.opset.slots)} slots")
        operands = []
        for (t, j), alpha in zip(self.opset.slots, alphas):
            tape = state.tapes[t]  # (B, S, *shape)
            if alpha.shape != tape.shape[:2]:
                raise ValueError(f"step {t_now}: slot ({t}, {j}) distribution has shape "
                                 f"{tuple(alpha.shape)}, expected {tuple(tape.shape[:2])} "
                                 f"(sources {[str(s) for s in self.sources(t, t_now)]})")
            a = alpha.reshape(*alpha.shape, *[1] * len(t.shape))  # (B, S, 1, ...)
            operands.append((a * tape).sum(dim=1))  # (B, *shape)
        args = [tuple(operands[s] for s in self.opset.op_slots[k]) for k in range(len(self.opset))]
        results: list[torch.Tensor | None] = [
            None if isinstance(op, DeviceOp) else op(*args[k]) for k, op in enumerate(self.opset)
        ]
        devices = {}
        for name, device in self.devices.items():
            ks = self._device_ops[name]
            out, devices[name] = device.machine_step(pi[:, ks], [args[k] for k in ks], state.devices[name])
            for k, y in zip(ks, out, strict=True):
                self.opset.ops[k].output.check(y, what=f"device op {self.opset.ops[k].name!r} result")
                results[k] = y
        tapes = {}
        for t, tape in state.tapes.items():
            ks = self._producers[t]
            register = tape[:, -1]
            if ks:
                register = t.merge(pi[:, ks], torch.stack([results[k] for k in ks]), register)
            tapes[t] = torch.cat([tape, register.unsqueeze(1)], dim=1)  # (B, S+1, *shape)
        return MachineState(t_now, tapes, devices)

    def run(
        self,
        instructions: Sequence[Instruction],
        inputs: Mapping[str, torch.Tensor],
        devices: Mapping[str, Any] | None = None,
    ) -> tuple[torch.Tensor, MachineState]:
        """Every step in turn; returns the output register (B, *shape) and the final state."""
        state = self.initial_state(inputs, devices)
        for instruction in instructions:
            state = self.step(instruction, state)
        return state.register(self.output), state

    def harden(self, state: MachineState) -> MachineState:
        """Every register value of a state in its type's hard form (device states as they are)."""
        return MachineState(state.step, {t: t.harden(v) for t, v in state.tapes.items()}, state.devices)
