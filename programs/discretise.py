"""Turn a soft trace (the controller's instructions) into a discrete `Program`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from diffvm.interp import Instruction, Machine
from diffvm.interp.device import DeviceOp
from diffvm.interp.machine import Source
from diffvm.programs.program import Program, Step

__all__ = ["discretise", "one_hot_trace"]


def discretise(machine: Machine, trace: Sequence[Instruction], *, example: int = 0) -> Program:
    """The most probable program of a soft trace, for one example of the batch.

    Each step takes the argmax op and, for each of that op's operand slots, the argmax source. A
    step reference is made canonical: it names the step that last wrote the type it is read as
    (or s0), which is what the keep-previous semantics reads anyway.
    """
    opset = machine.opset
    writers = {t: 0 for t in machine.types}  # type -> last step that wrote it
    history = [dict(writers)]
    steps = []
    for t_now, instruction in enumerate(trace, start=1):
        k = int(instruction.op[example].argmax())
        op = opset.ops[k]
        args = []
        for slot in opset.op_slots[k]:
            t, _ = opset.slots[slot]
            src = machine.sources(t, t_now)[int(instruction.operands[slot][example].argmax())]
            if src.kind == "step":
                src = Source("step", history[src.key][t])
            args.append(src)
        steps.append(Step(op.name, tuple(args)))
        writers = {**writers, op.output: t_now}
        history.append(writers)
    used = {s.op for s in steps}
    device_ops = tuple(o for o in opset if isinstance(o, DeviceOp) and o.name in used)
    return Program(machine.inputs, machine.output, tuple(steps), machine.constants, device_ops)


def one_hot_trace(machine: Machine, program: Program, *, dtype=torch.float64) -> list[Instruction]:
    """The soft instructions that spell out `program` on `machine`: one-hot op and operand choices.

    The inverse of `discretise`. Operand slots the chosen op does not read pick their first source.

    Returns:
        one `Instruction` per step, batch 1: op (1, K), each operand (1, S) for the slot's type.
    """
    opset = machine.opset
    trace = []
    for t, step in enumerate(program.steps, start=1):
        k = opset.index(step.op)
        picks = [0] * len(opset.slots)
        for slot, src in zip(opset.op_slots[k], step.args):
            fixed = machine.fixed_sources(opset.slots[slot][0])
            picks[slot] = len(fixed) + src.key if src.kind == "step" else fixed.index(src)
        trace.append(Instruction(_one_hot(k, len(opset), dtype), tuple(
            _one_hot(p, machine.num_sources(ty, t), dtype) for p, (ty, _) in zip(picks, opset.slots))))
    return trace


def _one_hot(index: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """(1, n) the distribution with all its mass on `index`."""
    return torch.nn.functional.one_hot(torch.tensor([index]), n).to(dtype)
