"""Compile a snippet to a machine `Program`, and run a program on the soft machine with one-hot
instructions.

A snippet has no inputs: its integer literals become Scalar constants (`n8584`), and every
operation becomes one step over the registered ops:

| snippet                 | steps                                                             |
|-------------------------|-------------------------------------------------------------------|
| `a + b`, `a - b`, `a*b` | `arith::add`, `arith::sub`, `arith::mul`                          |
| `c if a > b else d`     | `cmp::greater(a, b)` (or `cmp::less`), then `sel::where(s_k, c, d)` |
| `v += e`, `v -= e`      | `arith::add(v, e)`, `arith::sub(v, e)`                            |
| `for x in range(k): u`  | `u` unrolled k times, `x` read as the constant 0, 1, …, k−1      |

A variable is only a name for the source holding its value (a constant or the step that computed
it), so assignments cost no step. The program returns its last Scalar step; when that is not the
printed value (`print(5)`, or printing a variable computed earlier) one `arith::add(value, n0)`
copies it there.

Range: the machine's Scalar is a float. The compiler refuses a snippet any of whose values (both
branches of every conditional included) exceeds `MAX_EXACT` = 2**53 in magnitude; below that
float64 represents every integer exactly and the ops compute exactly, so the compiled program run
by the hard interpreter, and by the soft machine in float64, prints the evaluator's value.
"""

from __future__ import annotations

import torch

from diffvm.interp import Machine, OpSet, Scalar, get_op
from diffvm.interp.machine import Source
from diffvm.programs.discretise import one_hot_trace
from diffvm.programs.program import Program, Step
from diffvm.programs.snippets import (
    Assign,
    BinOp,
    Expr,
    IfExp,
    Name,
    Num,
    Snippet,
    SnippetError,
    largest_magnitude,
)

__all__ = ["MAX_EXACT", "SNIPPET_OPSET", "compile_snippet", "run_one_hot"]

# float64 holds every integer of magnitude up to 2**53 exactly (a 53-bit significand).
MAX_EXACT = 2**53

SNIPPET_OPSET = OpSet(["arith::add", "arith::sub", "arith::mul", "cmp::greater", "cmp::less", "sel::where"])
_ARITHMETIC = {"+": "arith::add", "-": "arith::sub", "*": "arith::mul"}
_COMPARISON = {">": "cmp::greater", "<": "cmp::less"}


class _Compiler:
    """Emits the steps of one snippet.

    `env` maps each variable to the source of its value, or to an int for a loop counter: that
    becomes a constant only if the body reads it.
    """

    def __init__(self):
        self.steps: list[Step] = []
        self.constants: dict[str, tuple] = {}
        self.env: dict[str, Source | int] = {}

    def constant(self, value: int) -> Source:
        name = f"n{value}"
        self.constants.setdefault(name, (Scalar, float(value)))
        return Source("const", name)

    def read(self, var: str) -> Source:
        value = self.env[var]
        return self.constant(value) if isinstance(value, int) else value

    def emit(self, op: str, *args: Source) -> Source:
        self.steps.append(Step(op, args))
        return Source("step", len(self.steps))  # s_k: the register of the type read, after step k

    def expr(self, e: Expr) -> Source:
        match e:
            case Num():
                return self.constant(e.value)
            case Name():
                return self.read(e.id)
            case BinOp():
                return self.emit(_ARITHMETIC[e.op], self.expr(e.left), self.expr(e.right))
            case IfExp():
                test = self.emit(_COMPARISON[e.test.op], self.expr(e.test.left), self.expr(e.test.right))
                # read as a Bool, s_test is the comparison even if later steps compare again
                return self.emit("sel::where", test, self.expr(e.body), self.expr(e.orelse))
        raise TypeError(f"not a snippet expression: {e!r}")

    def program(self, snippet: Snippet) -> Program:
        for s in snippet.statements:
            if isinstance(s, Assign):
                self.env[s.target] = self.expr(s.value)
                continue
            for i in range(s.count):
                self.env[s.var] = i
                target = s.body.target.id
                self.env[target] = self.emit(_ARITHMETIC[s.body.op], self.read(target), self.expr(s.body.value))
        result = self.expr(snippet.result)
        last = max((k for k, s in enumerate(self.steps, start=1) if get_op(s.op).output == Scalar), default=0)
        if result != Source("step", last):
            self.emit("arith::add", result, self.constant(0))  # the program returns its last Scalar step
        return Program({}, Scalar, tuple(self.steps), self.constants)


def compile_snippet(snippet: Snippet) -> Program:
    """The machine program computing what `snippet` prints (module docstring).

    Raises:
        SnippetError: a value of the snippet exceeds `MAX_EXACT` in magnitude.
    """
    largest = largest_magnitude(snippet)
    if largest > MAX_EXACT:
        raise SnippetError(f"a value of the snippet reaches {largest}; the machine computes in floats and is "
                           f"exact only up to 2**53 = {MAX_EXACT}")
    return _Compiler().program(snippet)


def run_one_hot(program: Program, *, dtype=torch.float64) -> float:
    """The result of an input-less program (a compiled snippet) on the soft machine.

    Each step is the soft step fed one-hot instructions (`one_hot_trace`), and its state is
    hardened before the next, so a comparison's logistic surrogate is read as its truth value, as
    the hard interpreter reads it.

    Args:
        dtype: the machine's float type; float64 is exact for integers up to `MAX_EXACT`.
    """
    machine = Machine(SNIPPET_OPSET, program.inputs, program.output, program.constants)
    state = machine.initial_state({}, dtype=dtype)
    for instruction in one_hot_trace(machine, program, dtype=dtype):
        state = machine.harden(machine.step(instruction, state))
    return program.output.to_plain(state.register(program.output)[0])
