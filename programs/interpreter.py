"""The hard interpreter: runs a `Program` on one example's plain Python values.

It is an implementation of its own, not the soft step fed one-hot tensors: it picks each op by
name, reads each argument by reference, and applies the op's hard meaning (`Op.hard`) to plain
values. This is what makes "soft step = hard step on one-hot instructions" a real test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffvm.interp import OpSet, get_op
from diffvm.programs.program import Program, ProgramError

__all__ = ["run", "run_trace"]


def run_trace(program: Program, inputs: Mapping[str, Any], *, opset: OpSet | None = None) -> list[dict]:
    """Run `program` on one example; return the registers after each step (index 0: initial).

    Args:
        program: the program.
        inputs: name -> plain value (float for Scalar, bool for Bool, int for Pointer, …).
        opset: when given, the program may only name ops in it.
    Returns:
        history[k] maps each type to its plain register value after step k.
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

    ops = [get_op(s.op) for s in program.steps]
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
        registers = {**registers, op.output: op.hard(*args)}
        history.append(registers)
    return history


def run(program: Program, inputs: Mapping[str, Any], *, opset: OpSet | None = None) -> Any:
    """The program's result on one example: the output type's register after the last step."""
    return run_trace(program, inputs, opset=opset)[-1][program.output]
