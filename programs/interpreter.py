"""The hard interpreter: runs a `Program` on one example's plain Python values.

It is an implementation of its own, not the soft step fed one-hot tensors: it picks each op by
name, reads each argument by reference, and applies the op's hard meaning (`Op.hard`) to plain
values; a device op runs on the device's plain state (`Device.plain_apply`: a list for a stack).
This is what makes "soft step = hard step on one-hot instructions" a real test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from diffvm.interp import OpSet
from diffvm.interp.device import Device, DeviceOp
from diffvm.programs.program import Program, ProgramError

__all__ = ["Execution", "execute", "run", "run_trace"]


class Execution(NamedTuple):
    """What a hard run leaves: the registers after each step, and each device's final plain state.

    Attributes:
        history: history[k] maps each type to its plain register value after step k (0: initial).
        devices: device name -> its plain state after the last step (an NRAM memory: a list of ints).
    """

    history: list[dict]
    devices: dict[str, Any]


def execute(
    program: Program,
    inputs: Mapping[str, Any],
    *,
    opset: OpSet | None = None,
    devices: Mapping[str, Device] | None = None,
    device_states: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Run `program` on one example: the registers after every step and the devices at the end.

    Args:
        program: the program.
        inputs: name -> plain value (float for Scalar, bool for Bool, int for Pointer, …).
        opset: when given, the program may only name ops in it.
        devices: name -> device, for the program's device ops.
        device_states: name -> plain initial state of a device (default: its `plain_initial()`).
    """
    if opset is not None:
        program.validate(opset)
    missing = [n for n in program.inputs if n not in inputs]
    extra = [n for n in inputs if n not in program.inputs]
    if missing or extra:
        raise ProgramError(f"program inputs: missing {missing}, unexpected {extra}")
    for name, t in program.inputs.items():
        try:
            t.from_plain(inputs[name])
        except (TypeError, ValueError) as e:
            raise ProgramError(f"program input {name!r} = {inputs[name]!r} is not a {t}: {e}") from None

    devices = dict(devices or {})
    needed = {o.device for o in program.device_ops} - set(devices)
    if needed:
        raise ProgramError(f"the program uses devices {sorted(needed)}; pass them as devices=")
    plain = {name: dev.plain_initial() for name, dev in devices.items()} | dict(device_states or {})
    ops = [program.op(s.op) for s in program.steps]
    types = {program.output, *program.inputs.values(), *(t for op in ops for t in (*op.inputs, op.output))}
    registers = {t: t.to_plain(t.initial(1)[0]) for t in types}
    history = [registers]
    for step, op in zip(program.steps, ops):
        args = []
        for src, t in zip(step.args, op.inputs):
            if src.kind == "input":
                args.append(inputs[src.key])
            elif src.kind == "const":
                args.append(program.constants[src.key][1])
            else:  # a step's register of the type read
                args.append(history[src.key][t])
        if isinstance(op, DeviceOp):
            result, plain[op.device] = devices[op.device].plain_apply(
                op.name.split("::", 1)[1], plain[op.device], *args)
        else:
            result = op.hard(*args)
        registers = {**registers, op.output: result}
        history.append(registers)
    return Execution(history, plain)


def run_trace(
    program: Program,
    inputs: Mapping[str, Any],
    *,
    opset: OpSet | None = None,
    devices: Mapping[str, Device] | None = None,
    device_states: Mapping[str, Any] | None = None,
) -> list[dict]:
    """The registers after each step of `execute` (index 0: initial): history[k] maps each type
    to its plain register value after step k."""
    return execute(program, inputs, opset=opset, devices=devices, device_states=device_states).history


def run(
    program: Program,
    inputs: Mapping[str, Any],
    *,
    opset: OpSet | None = None,
    devices: Mapping[str, Device] | None = None,
    device_states: Mapping[str, Any] | None = None,
) -> Any:
    """The program's result on one example: the output type's register after the last step."""
    history = execute(program, inputs, opset=opset, devices=devices, device_states=device_states).history
    return history[-1][program.output]
