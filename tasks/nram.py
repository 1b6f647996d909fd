"""NRAM-style memory tasks: learn a program over pointer registers that rewrites a memory.

Kurach, Andrychowicz & Sutskever 2015 ("Neural Random-Access Machines", §4): the problem is
written into a memory of M cells holding integers mod M, the machine runs, and the memory it
leaves is the answer. Here the machine's `Pointer[M]` registers take the paper's registers'
place (`diffvm.memory.registers`): a program is a straight-line list of NRAM modules
(`nram{M}::inc`, `add`, `lt`, …), the memory's `mem::read(p)` and `mem::write(p, a)`, and the
constants zero, one, two. Because no op names M, a program learned at M cells is the same
program at 4·M cells (`resize_program`): that is the test of generalisation.

- `access`: memory k, A[0…n−1], 0 (n = M − 2); after: cell 0 = A[k] (the only cell scored).
  A program: k = read(zero); j = inc(k); v = read(j); write(zero, v).
- `swap`: memory p, q, A[0…n−1], 0, with p ≠ q addresses of A's cells; after: A with cells p
  and q swapped (every array cell scored). A program: p = read(zero); q = read(one);
  x = read(p); y = read(q); write(p, y); write(q, x).
- `increment`: memory A[0…n−1], 0 (n = M − 1); after: every A[i] + 1 mod M. A loop body:
  v = read(i); w = inc(v); write(i, w), run for i = 0 … n−1.

`access` is the paper's (the first cell is replaced with A[k]). In `swap` p and q are memory
addresses (cells 2 … M−2), where the paper's text says "A[p]": with addresses the program is six
steps, with indices it would need two additions more. `increment` needs a loop: its program
is a loop body run once per array cell, with the loop counter as the machine input `i`
(`Pointer[M]`), the memory carried from one iteration to the next; `access` and `swap` run once,
without inputs. Array values are uniform in [1, M − 1] (0 is the terminator, as in the paper).

Everything random comes from the injected `numpy.random.Generator`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from diffvm.interp import Machine, OpSet, Pointer
from diffvm.memory import PointerRegisters, nram_constants, nram_ops
from diffvm.programs import Program, execute

__all__ = ["MEMORY_TASKS", "Access", "Increment", "MemoryExamples", "MemoryTask", "MemoryTaskConfig", "Swap",
           "get_memory_task", "resize_program"]

DEVICE = "mem"  # the memory's name on the machine: its ops are mem::read, mem::write
LOOP_INPUT = "i"  # the loop counter of a looped task, a machine input of type Pointer[M]
# Floor under a probability before its log: a cell whose right value has probability 0 costs
# −log(1e-9) ≈ 21 instead of an infinite loss with a NaN gradient.
LOG_FLOOR = 1e-9
# The smallest memory a task is posed in: a pointer, a second pointer or index, two array
# cells and the terminator.
MIN_CELLS = 5


@dataclass
class MemoryTaskConfig:
    """Options of a memory task run (`diffvm train access`)."""

    cells: int = 8  # M, memory cells (and values mod M) in training
    test_cells: int = 32  # the discretised program is also tested on memories this large (4·M)
    ops: str = "zero,inc,dec,add,sub,lt,le,eq,min,max"  # comma-separated NRAM modules the program may use

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        for name in ("cells", "test_cells"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < MIN_CELLS:
                raise ValueError(f"MemoryTaskConfig.{name} = {value!r}: must be an int ≥ {MIN_CELLS}")
        if not self.parsed_ops():
            raise ValueError(f"MemoryTaskConfig.ops = {self.ops!r}: must name at least one NRAM module")

    def parsed_ops(self) -> tuple[str, ...]:
        return tuple(op.strip() for op in self.ops.split(",") if op.strip())


class MemoryExamples(NamedTuple):
    """A batch of memory problems.

    Attributes:
        memory: (B, M) int64, the memory before the program runs.
        target: (B, M) int64, the memory it should leave.
        scored: (B, M) bool, the cells whose final value is checked.
    """

    memory: np.ndarray
    target: np.ndarray
    scored: np.ndarray


def _check_cells(name: str, cells: int) -> None:
    if isinstance(cells, bool) or not isinstance(cells, int) or cells < MIN_CELLS:
        raise ValueError(f"memory task {name!r}: cells = {cells!r}: must be an int ≥ {MIN_CELLS}")


def resize_program(program: Program, cells: int) -> Program:
    """The same program over a memory of `cells` cells: `Pointer[M]` becomes `Pointer[cells]`
    and `nram{M}::op` becomes `nram{cells}::op` (registered on the way)."""
    types = {t.size for t in (*program.inputs.values(), program.output) if isinstance(t, Pointer)}
    if len(types) != 1:
        raise ValueError(f"resize_program: expected a program over one Pointer[M] type, got sizes {sorted(types)}")
    (old,) = types
    nram_ops(cells)  # make sure the ops the renamed program names exist
    text = json.dumps(program.to_dict())
    text = text.replace(f'"Pointer[{old}]"', f'"Pointer[{cells}]"').replace(f'"nram{old}::', f'"nram{cells}::')
    return Program.from_dict(json.loads(text))


class MemoryTask(ABC):
    """A memory-rewriting task (module docstring) for `diffvm.controllers.induce`.

    Args:
        cells: M, the memory's size in training (also the modulus of its values).
        ops: the NRAM modules the program may use, by short name ("inc", "add", …; see
            `diffvm.memory.registers`); the memory's read and write are always there.
    """

    name: ClassVar[str]
    looped: ClassVar[bool] = False  # run the program once per array cell, the counter as input `i`
    default_ops: ClassVar[tuple[str, ...]] = ("zero", "inc", "dec", "add", "sub", "lt", "le", "eq", "min", "max")

    def __init__(self, cells: int = 8, ops: tuple[str, ...] | None = None):
        _check_cells(self.name, cells)
        self.cells = cells
        self.ops = tuple(ops) if ops is not None else self.default_ops
        known = [op.name.split("::")[1] for op in nram_ops(cells)]
        unknown = [op for op in self.ops if op not in known]
        if unknown or not self.ops:
            raise ValueError(f"memory task {self.name!r}: unknown NRAM ops {unknown or '(none given)'}; "
                             f"known: {', '.join(known)}")

    # --- the machine ------------------------------------------------------------------------
    def machine(self, cells: int | None = None) -> Machine:
        """The machine the program runs on: NRAM ops, constants zero/one/two, the memory as `mem`."""
        m = self.cells if cells is None else cells
        _check_cells(self.name, m)
        ops = [op for op in nram_ops(m) if op.name.split("::")[1] in self.ops]
        inputs = {LOOP_INPUT: Pointer[m]} if self.looped else {}
        return Machine(OpSet(ops), inputs, Pointer[m], constants=nram_constants(m),
                       devices={DEVICE: PointerRegisters(m, 1)})

    # --- data -------------------------------------------------------------------------------
    @abstractmethod
    def problems(self, rng: np.random.Generator, batch: int, cells: int) -> MemoryExamples:
        """`batch` problems in a memory of `cells` cells."""

    def examples(self, rng: np.random.Generator, batch: int, cells: int | None = None) -> MemoryExamples:
        """A batch of problems at the training size, or at `cells` cells."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"memory task {self.name!r}: batch = {batch!r}: must be an int ≥ 1")
        m = self.cells if cells is None else cells
        _check_cells(self.name, m)
        return self.problems(rng, batch, m)

    def iterations(self, cells: int) -> int:
        """How many times the program runs on a memory of `cells` cells (looped tasks: n)."""
        return 1

    # --- scoring ----------------------------------------------------------------------------
    def final_memory(self, program: Program, memory: np.ndarray) -> list[int]:
        """The memory the hard interpreter leaves after running `program` on one memory (M,)."""
        cells = len(memory)
        if program.output != Pointer[cells]:
            raise ValueError(f"memory task {self.name!r}: the program computes {program.output} but the memory has "
                             f"{cells} cells: run resize_program(program, {cells}) first")
        device = {DEVICE: PointerRegisters(cells, 1)}
        state = [int(v) for v in memory]
        for i in range(self.iterations(cells)):
            inputs = {LOOP_INPUT: i} if self.looped else {}
            state = execute(program, inputs, devices=device, device_states={DEVICE: state}).devices[DEVICE]
        return state

    def exact(self, program: Program, examples: MemoryExamples) -> float:
        """The fraction of problems whose scored cells the program (hard interpreter) gets right."""
        right = [
            bool(np.all(np.asarray(self.final_memory(program, m))[s] == t[s]))
            for m, t, s in zip(examples.memory, examples.target, examples.scored)
        ]
        return float(np.mean(right))

    def partial_credit(self, program: Program, examples: MemoryExamples) -> float:
        """The fraction of scored cells, over all problems, that the program (hard interpreter) leaves
        right: a graded score where `exact` gives a problem 0 or 1 (induction's `reward="graded"`).
        It is 1 exactly when `exact` is."""
        right = [
            np.asarray(self.final_memory(program, m))[s] == t[s]
            for m, t, s in zip(examples.memory, examples.target, examples.scored)
        ]
        return float(np.concatenate(right).mean())

    def soft_fit(self, machine: Machine, instructions, examples: MemoryExamples) -> torch.Tensor:
        """NRAM's loss: −log P(a scored cell holds its target value), averaged over scored cells,
        from the soft machine run on `instructions` (one program for the whole batch)."""
        batch, cells = examples.memory.shape
        device = machine.devices[DEVICE]
        state = device.initial_state(batch, memory=torch.as_tensor(examples.memory))
        eye = torch.eye(cells)
        for i in range(self.iterations(cells)):
            inputs = {LOOP_INPUT: eye[i].expand(batch, cells)} if self.looped else {}
            _, final = machine.run(instructions, inputs, devices={DEVICE: state})
            state = final.devices[DEVICE]
        target = torch.as_tensor(examples.target).unsqueeze(-1)  # (B, M, 1)
        p = state.memory.gather(-1, target).squeeze(-1)  # (B, M) P(cell i = its target)
        scored = torch.as_tensor(examples.scored, dtype=p.dtype)
        return -(torch.log(p.clamp(min=LOG_FLOOR)) * scored).sum() / scored.sum()


def _array(rng: np.random.Generator, batch: int, length: int, cells: int) -> np.ndarray:
    """(B, length) array values uniform in [1, M − 1]: 0 is the terminator."""
    return rng.integers(1, cells, size=(batch, length))


class Access(MemoryTask):
    """cell 0 ← A[k], with k in cell 0 and A from cell 1 (module docstring)."""

    name = "access"

    def problems(self, rng, batch, cells):
        n = cells - 2  # k, A[0…n−1], the terminator
        memory = np.zeros((batch, cells), dtype=np.int64)
        memory[:, 1:1 + n] = _array(rng, batch, n, cells)
        k = rng.integers(0, n, size=batch)
        memory[:, 0] = k
        target = memory.copy()
        target[:, 0] = memory[np.arange(batch), 1 + k]
        scored = np.zeros((batch, cells), dtype=bool)
        scored[:, 0] = True
        return MemoryExamples(memory, target, scored)


class Swap(MemoryTask):
    """Cells p and q of the array swapped, p and q in cells 0 and 1 (module docstring)."""

    name = "swap"

    def problems(self, rng, batch, cells):
        n = cells - 3  # p, q, A[0…n−1], the terminator: A spans cells 2 … M−2
        memory = np.zeros((batch, cells), dtype=np.int64)
        memory[:, 2:2 + n] = _array(rng, batch, n, cells)
        pq = np.stack([rng.choice(n, size=2, replace=False) for _ in range(batch)]) + 2  # (B, 2) p ≠ q
        memory[:, :2] = pq
        target = memory.copy()
        rows = np.arange(batch)
        target[rows, pq[:, 0]], target[rows, pq[:, 1]] = memory[rows, pq[:, 1]], memory[rows, pq[:, 0]]
        scored = np.zeros((batch, cells), dtype=bool)
        scored[:, 2:2 + n] = True  # the whole array: the program must leave the other cells alone
        return MemoryExamples(memory, target, scored)


class Increment(MemoryTask):
    """Every array cell incremented mod M (module docstring); a loop body over i = 0 … n−1."""

    name = "increment"
    looped = True

    def iterations(self, cells):
        return cells - 1  # A[0…n−1] and the terminator

    def problems(self, rng, batch, cells):
        n = cells - 1
        memory = np.zeros((batch, cells), dtype=np.int64)
        memory[:, :n] = _array(rng, batch, n, cells)
        target = memory.copy()
        target[:, :n] = (memory[:, :n] + 1) % cells
        scored = np.zeros((batch, cells), dtype=bool)
        scored[:, :n] = True
        return MemoryExamples(memory, target, scored)


MEMORY_TASKS: dict[str, type[MemoryTask]] = {t.name: t for t in (Access, Swap, Increment)}


def get_memory_task(name: str) -> type[MemoryTask]:
    """The memory task class named `name`; the error lists the known ones."""
    if name not in MEMORY_TASKS:
        raise ValueError(f"unknown memory task {name!r}; known: {', '.join(MEMORY_TASKS)}")
    return MEMORY_TASKS[name]
