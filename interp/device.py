"""Devices: the stateful parts of the machine (memories, stacks, registers) and their common face.

A device is an `nn.Module` that holds parameters only; its state is an immutable `NamedTuple`
passed in and out (a torch pytree, so it nests, detaches and moves like any tensor tree):

    state = device.initial_state(batch, device=..., dtype=...)
    read, state = device(interface, state)            # one time step

The *interface* is what a controller emits for the device each step, a `NamedTuple` of tensors
whose fields are named after the paper's symbols (the DNC's k, β, e, v, f, g^a, g^w, π …). A
device declares its fields with `interface_fields()` (per-example shape and the activation that
maps an unconstrained controller output into the field's domain), so a controller of any kind
drives any device through `interface_from_raw`: split a (B, D) vector, reshape, activate — the
DNC paper's interface-vector parsing, for every device.

Hard semantics: `harden(interface)` rounds every control to its discrete form (one-hot weights,
0/1 gates and strengths); a device run on hardened controls is the discrete data structure it
models (a list, an array, integer registers), which the tests check against independent plain
implementations.

Machine ops: a device may also expose ops to the soft machine (`ops()`), e.g. a stack's
`push(Vector[W])` and `pop() -> Vector[W]`. The machine names them `<device>::<op>`, puts them in
its OpSet beside the pure ops, and each step calls `machine_step(weights, args, state)` with the
probability π_t[k] of each of the device's ops and their soft operands; the device turns them into
its own continuous update (a push of strength π[push], …) and returns each op's result, which the
machine merges into its registers like any op's. The hard interpreter runs the same ops through
`plain_initial()` and `plain_apply(op, state, *args)`: an implementation of its own over plain
Python values (a list for a stack), so that "one-hot instructions make the soft machine equal the
hard interpreter" compares two implementations, not one with itself.

`check_device` is the public checker run over every device: shapes, batch independence, float64
gradients of reads with respect to the raw interface, and finite values at extreme inputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from diffvm.interp.types import TRUTH_THRESHOLD, ValueType

__all__ = [
    "ACTIVATIONS", "Device", "DeviceCheckError", "DeviceOp", "InterfaceField", "check_device", "hard_choice",
    "hard_gate",
]


def _oneplus(x: torch.Tensor) -> torch.Tensor:
    # DNC's oneplus(x) = 1 + log(1 + e^x): strengths β ≥ 1 and sharpening γ ≥ 1.
    return 1 + F.softplus(x)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,  # gates and strengths in [0, 1]
    "tanh": torch.tanh,
    "oneplus": _oneplus,
    "softmax": lambda x: torch.softmax(x, dim=-1),  # over the field's last dimension
}


def hard_choice(x: torch.Tensor) -> torch.Tensor:
    """A softmax control hardened: one-hot at its argmax over the last dimension, same shape."""
    return F.one_hot(x.argmax(-1), x.shape[-1]).to(x.dtype)


def hard_gate(x: torch.Tensor) -> torch.Tensor:
    """A gate or strength in [0, 1] hardened to 0 or 1 (1 above one half, as `Bool` hardens)."""
    return (x > TRUTH_THRESHOLD).to(x.dtype)


class InterfaceField(NamedTuple):
    """One field of a device interface.

    Attributes:
        shape: the per-example shape, e.g. (R, W) for R read keys of width W.
        activation: a key of `ACTIVATIONS`, mapping raw controller output into the field's domain.
    """

    shape: tuple[int, ...]
    activation: str


class DeviceOp(NamedTuple):
    """An op a device exposes to the machine.

    Attributes:
        name: `op` as the device declares it; `<device>::<op>` once a machine has named the device.
        inputs: the argument types.
        output: the result type (an op that only acts, like a write, returns what it wrote).
        device: the device's name in the machine ("" as declared by the device).
    """

    name: str
    inputs: tuple[ValueType, ...]
    output: ValueType
    device: str = ""

    @property
    def arity(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        return f"<device op {self.name}({', '.join(map(str, self.inputs))}) -> {self.output}>"


class Device(nn.Module):
    """Base class of devices. Subclasses define `Interface` and `State` (NamedTuple classes),
    `interface_fields`, `read_size`, `initial_state`, `forward` and `harden`."""

    Interface: type
    State: type

    def interface_fields(self) -> dict[str, InterfaceField]:
        """Field name -> shape and activation, in the order of `Interface`'s fields."""
        raise NotImplementedError

    @property
    def read_size(self) -> int:
        """The width of the flattened read a controller receives each step."""
        raise NotImplementedError

    def initial_state(self, batch: int, *, device=None, dtype=None) -> Any:
        raise NotImplementedError

    def forward(self, interface: Any, state: Any) -> tuple[torch.Tensor, Any]:
        """One step: returns the read (B, read_size) and the new state."""
        raise NotImplementedError

    def harden(self, interface: Any) -> Any:
        """The interface with every control rounded to its discrete form."""
        raise NotImplementedError

    # --- machine ops (optional) -------------------------------------------------------------
    def ops(self) -> tuple[DeviceOp, ...]:
        """The ops this device exposes to the machine (none by default)."""
        return ()

    def machine_step(
        self, weights: torch.Tensor, args: Sequence[tuple[torch.Tensor, ...]], state: Any
    ) -> tuple[list[torch.Tensor], Any]:
        """The soft meaning of one machine step for this device.

        Args:
            weights: (B, K_d) π_t of each of the device's ops, in the order of `ops()`; the rest of
                the step's probability went to ops elsewhere, which leave the device alone.
            args: per op, its soft arguments, each (B, *shape).
            state: the device state before the step.
        Returns:
            per op, its result (B, *output shape), and the new state.
        """
        raise NotImplementedError(f"{type(self).__name__} exposes no machine ops")

    def plain_initial(self) -> Any:
        """The hard interpreter's initial state of the device, as plain Python values."""
        raise NotImplementedError(f"{type(self).__name__} exposes no machine ops")

    def plain_apply(self, op: str, state: Any, *args: Any) -> tuple[Any, Any]:
        """The hard meaning of op `op` (as named in `ops()`) on plain values: (result, new state)."""
        raise NotImplementedError(f"{type(self).__name__} exposes no machine ops")

    # --- shared -----------------------------------------------------------------------------
    @property
    def interface_size(self) -> int:
        """D, the width of the raw controller output `interface_from_raw` takes."""
        return sum(math.prod(f.shape) for f in self.interface_fields().values())

    def interface_from_raw(self, raw: torch.Tensor) -> Any:
        """Split raw controller output (B, D) into the interface, each field activated."""
        fields = self.interface_fields()
        if list(fields) != list(self.Interface._fields):
            raise TypeError(f"{type(self).__name__}.interface_fields() names {list(fields)}, "
                            f"but its Interface has {list(self.Interface._fields)}")
        if raw.dim() != 2 or raw.shape[1] != self.interface_size:
            raise ValueError(f"{type(self).__name__}: raw interface has shape {tuple(raw.shape)}, "
                             f"expected (B, {self.interface_size})")
        values, at = [], 0
        for name, field in fields.items():
            size = math.prod(field.shape)
            x = raw[:, at:at + size].reshape(raw.shape[0], *field.shape)  # (B, *shape)
            if field.activation not in ACTIVATIONS:
                raise ValueError(f"{type(self).__name__} field {name!r}: unknown activation "
                                 f"{field.activation!r}; expected one of {sorted(ACTIVATIONS)}")
            values.append(ACTIVATIONS[field.activation](x))
            at += size
        return self.Interface(*values)


class DeviceCheckError(AssertionError):
    """A device failed `check_device`; the message names the device and the property."""


def check_device(
    device: Device, *, batch: int = 3, steps: int = 4, seed: int = 0, gradcheck: bool = True
) -> None:
    """Check the properties every device must have, on random interfaces; raise
    `DeviceCheckError` naming the first that fails.

    - every read has shape (B, read_size) and every state leaf keeps its batch dimension first;
    - batch independence: example i's reads are the same run alone as in the batch;
    - float64 `gradcheck` of the reads over `steps` steps with respect to the raw interface;
    - raw interfaces scaled by 1e4 (saturated gates, huge strengths) and zero give finite reads
      and finite gradients.
    Keep the device small (a few slots, narrow words): gradcheck is O(parameters × steps).
    """
    name = type(device).__name__
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(steps, batch, device.interface_size, generator=gen, dtype=torch.float64)
    device = copy.deepcopy(device).to(torch.float64)  # the caller's device is left as it was

    def episode(raw: torch.Tensor) -> torch.Tensor:
        state = device.initial_state(raw.shape[1], dtype=raw.dtype)
        reads = []
        for t in range(raw.shape[0]):
            read, state = device(device.interface_from_raw(raw[t]), state)
            if read.shape != (raw.shape[1], device.read_size):
                raise DeviceCheckError(f"{name}: step {t} read has shape {tuple(read.shape)}, "
                                       f"expected ({raw.shape[1]}, {device.read_size})")
            for leaf in _leaves(state):
                if isinstance(leaf, torch.Tensor) and leaf.shape[:1] != (raw.shape[1],):
                    raise DeviceCheckError(f"{name}: a state tensor of shape {tuple(leaf.shape)} "
                                           f"does not lead with the batch ({raw.shape[1]})")
            reads.append(read)
        return torch.stack(reads)  # (T, B, read_size)

    reads = episode(raw)
    for i in range(batch):
        alone = episode(raw[:, i:i + 1])
        if not torch.allclose(alone[:, 0], reads[:, i], atol=1e-10):
            raise DeviceCheckError(f"{name}: example {i}'s reads differ when run alone "
                                   "(batch independence)")
    if gradcheck:
        x = raw[:, :2].clone().requires_grad_(True)
        try:
            torch.autograd.gradcheck(episode, (x,), atol=1e-6, rtol=1e-4)
        except RuntimeError as e:
            raise DeviceCheckError(f"{name}: float64 gradcheck failed: {e}") from e
    for label, extreme in [("raw interface × 1e4", raw * 1e4), ("zero raw interface", raw * 0)]:
        x = extreme.clone().requires_grad_(True)
        out = episode(x)
        if not torch.isfinite(out).all():
            raise DeviceCheckError(f"{name}: non-finite read for a {label}")
        out.sum().backward()
        if not torch.isfinite(x.grad).all():
            raise DeviceCheckError(f"{name}: non-finite gradient for a {label}")


def _leaves(tree: Any) -> list[Any]:
    """The leaves of nested tuples (NamedTuple states nest)."""
    if isinstance(tree, tuple):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]
