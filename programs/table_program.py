"""Discrete Neural Programmer programs: T steps of (op, column, question reference).

A `TableProgram` is what the controller's choices become when each is hardened to its argmax:
per step an op of `diffvm.memory.table.OP_NAMES`, the table column it reads (an index into the
table's columns) and the question number `q[k]` or question token `w[k]` it reads. Steps read
the registers of earlier steps as the soft machine does: the selection after step t−1 (and t−2
for and/or), the scalar after t−1 and t−3 (difference); a register a step does not write keeps
its value. Before step 1 every row is selected and both answers are empty (0, no cells).

The listing is the answer as one SQL-like expression, e.g. for the steps
`greater(col=2, q[0])`, `count`:

    count(select(greater(col=2, q[0])))

`run_table_program` is the hard interpreter: plain Python over the table's cells (lists, floats,
strings), one question at a time; it shares nothing with the soft ops but the op names.
JSON form: `{"format": "diffvm.table_program/1", "steps": [{"op": "greater", "column": 2,
"ref": 0}, {"op": "count", "column": null, "ref": null}]}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from diffvm.memory.table import OP_NAMES, TABLE_OPS, Table, TableChoice

__all__ = ["TABLE_PROGRAM_FORMAT", "TableProgramError", "TableStep", "TableProgram", "TableAnswer",
           "run_table_program", "discretise_choices", "program_choices"]

TABLE_PROGRAM_FORMAT = "diffvm.table_program/1"


class TableProgramError(ValueError):
    """A table program is malformed or does not fit the table/question it runs on."""


@dataclass(frozen=True)
class TableStep:
    """One step: `op`, the table column it reads (or None), its question reference (or None).

    A pivot op (greater …) whose reference is None had no question number to point at: it
    selects no rows, as the soft op does with no pivot mass.
    """

    op: str
    column: int | None = None
    ref: int | None = None

    def __post_init__(self):
        if self.op not in TABLE_OPS:
            raise TableProgramError(f"unknown table op {self.op!r}; known: {', '.join(OP_NAMES)}")
        spec = TABLE_OPS[self.op]
        if (spec.column is None) != (self.column is None):
            raise TableProgramError(f"op {self.op!r}: column must be {'None' if spec.column is None else 'an int'},"
                                    f" got {self.column!r}")
        if spec.reference is None and self.ref is not None:
            raise TableProgramError(f"op {self.op!r} reads no question reference, got ref={self.ref!r}")
        for what, v in (("column", self.column), ("ref", self.ref)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise TableProgramError(f"op {self.op!r}: {what} must be an int ≥ 0, got {v!r}")

    def __str__(self) -> str:
        return _render(self, lambda back: "·", lambda back: "·")


def _render(step: TableStep, sel, scalar) -> str:
    """The step as an expression; `sel(back)`/`scalar(back)` render the register after step t − back."""
    if step.op == "reset":
        return "all"
    spec = TABLE_OPS[step.op]
    ref = {"number": "q", "token": "w"}.get(spec.reference)
    parts = []
    for r in spec.reads:
        if r in ("numbers", "words", "column"):
            parts.append(f"col={step.column}")
        elif r in ("number", "token"):
            parts.append(f"{ref}[{step.ref}]" if step.ref is not None else f"{ref}[none]")
        elif r in ("sel1", "sel2"):
            s = sel(int(r[-1]))
            parts.append(s if spec.writes == "selection" else f"select({s})")
        else:  # scalar1, scalar3
            parts.append(scalar(int(r[-1])))
    return f"{step.op}({', '.join(parts)})"


@dataclass(frozen=True)
class TableProgram:
    """A discrete table program (module docstring)."""

    steps: tuple[TableStep, ...]

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise TableProgramError("a table program needs at least one step")
        for i, s in enumerate(self.steps):
            if not isinstance(s, TableStep):
                raise TableProgramError(f"step {i + 1}: expected a TableStep, got {type(s).__name__}")

    @property
    def answer_kind(self) -> str:
        """The register the last step writes: "scalar", "selection" or "lookup"."""
        return TABLE_OPS[self.steps[-1].op].writes

    def expression(self, kind: str | None = None, upto: int | None = None) -> str:
        """The register `kind` (default: the answer's) after step `upto` (default: the last) as one
        expression over the table and the question."""
        kind = kind or self.answer_kind
        t = len(self.steps) if upto is None else upto
        initial = {"selection": "all", "scalar": "0", "lookup": "nothing"}
        if kind not in initial:
            raise TableProgramError(f"register kind {kind!r}; expected one of {sorted(initial)}")
        while t > 0 and TABLE_OPS[self.steps[t - 1].op].writes != kind:
            t -= 1
        if t == 0:
            return initial[kind]
        before = lambda k: lambda back: self.expression(k, max(0, t - back))  # noqa: E731
        return _render(self.steps[t - 1], before("selection"), before("scalar"))

    def listing(self) -> str:
        """The steps, one a line, then the answer as one expression."""
        lines = [f"s{i} = {s}" for i, s in enumerate(self.steps, start=1)]
        return "\n".join([*lines, f"answer = {self.expression()}"])

    def __str__(self) -> str:
        return self.expression()

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": TABLE_PROGRAM_FORMAT,
                "steps": [{"op": s.op, "column": s.column, "ref": s.ref} for s in self.steps]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> TableProgram:
        if not isinstance(data, dict) or data.get("format") != TABLE_PROGRAM_FORMAT:
            raise TableProgramError(f"not a table program: expected format {TABLE_PROGRAM_FORMAT!r}")
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise TableProgramError("table program JSON: 'steps' must be a list")
        out = []
        for i, s in enumerate(steps, start=1):
            if not isinstance(s, dict) or set(s) - {"op", "column", "ref"} or "op" not in s:
                raise TableProgramError(f"table program JSON step {i}: expected keys op, column, ref; got {s!r}")
            out.append(TableStep(s["op"], s.get("column"), s.get("ref")))
        return cls(tuple(out))

    @classmethod
    def from_json(cls, text: str) -> TableProgram:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise TableProgramError(f"table program JSON: {e}") from None
        return cls.from_dict(data)


# --------------------------------------------------------------------------------------------
# The hard interpreter


class TableAnswer(NamedTuple):
    """The registers after the last step, as plain values.

    Attributes:
        scalar: the scalar answer.
        selection: per row, whether it is selected.
        cells: the printed cells, as (row, table column) pairs.
    """

    scalar: float
    selection: tuple[bool, ...]
    cells: frozenset[tuple[int, int]]


def _first_only(rows: list[bool]) -> list[bool]:
    out, seen = [], False
    for s in rows:
        out.append(s and not seen)
        seen = seen or s
    return out


def _extreme_rows(values: list[float], rows: list[bool], pick) -> list[bool]:
    chosen = [v for v, s in zip(values, rows) if s]
    if not chosen:
        return [False] * len(rows)
    best = pick(chosen)
    return [s and v == best for v, s in zip(values, rows)]


_PIVOT = {"greater": lambda v, p: v > p, "lesser": lambda v, p: v < p,
          "geq": lambda v, p: v >= p, "leq": lambda v, p: v <= p}


def run_table_program(program: TableProgram, table: Table, numbers: Sequence[float],
                      tokens: Sequence[str] = ()) -> TableAnswer:
    """Run `program` on one table and question (module docstring).

    Args:
        numbers: the question's numbers, `q[0]`, `q[1]`, …
        tokens: the question's tokens, `w[0]`, `w[1]`, … (word_match compares cells with them).
    Raises:
        TableProgramError: a column out of range or of the wrong kind, a question number or token
            the question does not have; the message names the step.
    """
    rows = table.rows
    sel: list[list[bool]] = [[True] * rows]
    scalar: list[float] = [0.0]
    cells: frozenset = frozenset()
    for t, step in enumerate(program.steps, start=1):
        where = f"table program step {t} ({step})"
        spec = TABLE_OPS[step.op]
        values = None
        if step.column is not None:
            if not 0 <= step.column < len(table.names):
                raise TableProgramError(f"{where}: column {step.column} out of range; the table has "
                                        f"{len(table.names)} columns")
            numeric = table.is_numeric(step.column)
            if numeric != (spec.column == "numbers"):
                raise TableProgramError(f"{where}: column {step.column} ({table.names[step.column]!r}) holds "
                                        f"{'numbers' if numeric else 'words'}, the op needs {spec.column}")
            values = list(table.columns[table.names[step.column]])
        pivot = None
        if step.ref is not None and spec.reference == "number":
            if step.ref >= len(numbers):
                raise TableProgramError(f"{where}: question number q[{step.ref}] is missing; the question has "
                                        f"{len(numbers)} number(s)")
            pivot = float(numbers[step.ref])
        elif step.ref is not None:
            if step.ref >= len(tokens):
                raise TableProgramError(f"{where}: question token w[{step.ref}] is missing; the question has "
                                        f"{len(tokens)} token(s)")
            pivot = tokens[step.ref]
        s1, s2 = sel[-1], sel[max(0, len(sel) - 2)]
        x1, x3 = scalar[-1], scalar[max(0, len(scalar) - 3)]
        new_sel, new_scalar = s1, x1
        op = step.op
        if op == "sum":
            new_scalar = sum(v for v, s in zip(values, s1) if s)
        elif op == "count":
            new_scalar = float(sum(s1))
        elif op == "difference":
            new_scalar = x3 - x1
        elif op in _PIVOT:
            new_sel = [False] * rows if pivot is None else [_PIVOT[op](v, pivot) for v in values]
        elif op in ("max", "min"):
            new_sel = _extreme_rows(values, s1, max if op == "max" else min)
        elif op == "and":
            new_sel = [a and b for a, b in zip(s1, s2)]
        elif op == "or":
            new_sel = [a or b for a, b in zip(s1, s2)]
        elif op == "first":
            new_sel = _first_only(s1)
        elif op == "last":
            new_sel = _first_only(s1[::-1])[::-1]
        elif op == "prev":
            new_sel = [s1[i + 1] if i + 1 < rows else False for i in range(rows)]
        elif op == "next":
            new_sel = [s1[i - 1] if i > 0 else False for i in range(rows)]
        elif op == "word_match":
            new_sel = [v == pivot for v in values]
        elif op == "reset":
            new_sel = [True] * rows
        elif op == "print":
            cells = frozenset((i, step.column) for i in range(rows) if s1[i])
        else:  # pragma: no cover  (TableStep refuses unknown ops)
            raise TableProgramError(f"{where}: no hard meaning for {op!r}")
        sel.append(list(new_sel))
        scalar.append(float(new_scalar))
    return TableAnswer(scalar[-1], tuple(sel[-1]), cells)


# --------------------------------------------------------------------------------------------
# Between programs and the controller's soft choices


def discretise_choices(choices: Sequence[TableChoice], ops: Sequence[str], table: Table, *, example: int = 0,
                       numbers: int | None = None, tokens: int | None = None) -> TableProgram:
    """The most probable program of a soft trace, for one example: per step the argmax op, and
    for that op the argmax column (numeric or word, as the op reads) and reference.

    Args:
        choices: one `TableChoice` per step (the controller's).
        ops: the op names the choices' π ranges over.
        table: example `example`'s table (maps column choices to table column indices).
        numbers, tokens: how many question numbers / tokens the example has (default: all
            positions); a pivot op of a question without numbers gets ref None.
    """
    steps = []
    for c in choices:
        name = ops[int(c.op[example].argmax())]
        spec = TABLE_OPS[name]
        column = ref = None
        if spec.column == "numbers":
            column = table.numeric_columns[int(c.numbers[example].argmax())]
        elif spec.column == "words":
            column = table.word_columns[int(c.words[example].argmax())]
        if spec.reference == "number":
            q = c.number.shape[-1] if numbers is None else numbers
            ref = int(c.number[example, ops.index(name), :q].argmax()) if q > 0 else None
        elif spec.reference == "token":
            n = c.token.shape[-1] if tokens is None else tokens
            ref = int(c.token[example, :n].argmax())
        steps.append(TableStep(name, column, ref))
    return TableProgram(tuple(steps))


def program_choices(program: TableProgram, ops: Sequence[str], table: Table, *, numbers: int, tokens: int,
                    dtype=torch.float64) -> list[TableChoice]:
    """The one-hot choices (batch 1) that spell out `program`; the inverse of `discretise_choices`.

    A pivot step with ref None gets no β mass (no question number); choices the op does not read
    pick index 0.
    """
    hot = lambda i, n: F.one_hot(torch.tensor([i]), n).to(dtype) if n else torch.zeros(1, 0, dtype=dtype)  # noqa: E731
    out = []
    for t, step in enumerate(program.steps, start=1):
        if step.op not in ops:
            raise TableProgramError(f"step {t}: op {step.op!r} is not among the controller's ops {list(ops)}")
        spec = TABLE_OPS[step.op]
        k = list(ops).index(step.op)
        num = table.numeric_columns.index(step.column) if spec.column == "numbers" else 0
        word = table.word_columns.index(step.column) if spec.column == "words" else 0
        beta = torch.zeros(1, len(ops), numbers, dtype=dtype)
        if spec.reference == "number" and step.ref is not None:
            beta[0, k, step.ref] = 1
        token = step.ref if spec.reference == "token" else 0
        out.append(TableChoice(hot(k, len(ops)), hot(num, len(table.numeric_columns)),
                               hot(word, len(table.word_columns)), beta, hot(token, tokens)))
    return out
