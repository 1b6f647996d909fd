"""The Neural Programmer's table (Neelakantan, Le & Sutskever 2016): data, ops, soft execution.

Notation (docs/NOTATION.md): B batch, R rows, K ops; here also C numeric columns, V word
columns, Q numbers in a question, L question tokens.

**The table** (`Table`) is plain data: named columns of equal length, each numeric (finite
floats) or of words (strings). `encode_tables` stacks a batch of tables of one shape into a
`TableState`: numeric columns (B, C, R) and word columns as vocabulary ids (B, V, R).

**The ops** (`table_ops(R, C)`) are ordinary machine primitives over `Selection[R]` row
selectors, `Vector[R]` columns and `Scalar`s, registered once per size under `table{R}::…`
(`print` also depends on C: `table{R}x{C}::print`). The paper's §2.3 meanings, with the later
version's extra selectors (WikiTableQuestions, Neelakantan et al. 2017):

| op | arguments | result | meaning |
|---|---|---|---|
| sum | column v, selection s | Scalar | Σ_i s[i]·v[i] |
| count | s | Scalar | Σ_i s[i] |
| difference | a, b | Scalar | a − b (the scalars of steps t−3 and t−1) |
| greater, lesser, geq, leq | v, pivot p | Selection | v[i] > p, v[i] < p, v[i] ≥ p, v[i] ≤ p |
| max, min | v, s | Selection | s[i]·Π_{j: v[j] > v[i]} (1 − s[j]) (min: v[j] < v[i]) |
| and, or | s2, s1 | Selection | min(s2, s1), max(s2, s1) (the selections of steps t−2, t−1) |
| first, last | s | Selection | s[i]·Π_{j<i} (1 − s[j]), s[i]·Π_{j>i} (1 − s[j]) |
| prev, next | s | Selection | s[i + 1], s[i − 1] (the row above / below a selected one) |
| word_match | word ids w, word id x | Selection | w[i] = x |
| reset | s | Selection | 1 (every row) |
| print | column choice c (Pointer[C]), s | Selection[R·C] | cell (i, j) = s[i]·c[j] |

Comparisons are exact, as in the paper (g[i][j] = table[i][j] > pivot): no gradient reaches the
table or the pivot's value; the controller learns through the probabilities with which it mixes
their results (op, column, and the pointer over question numbers). max/min/first/last are the
exact formulas of "selected and no selected row beats it", so soft = hard on 0/1 selections.

**Soft execution** (`table_step`): the controller's `TableChoice` at step t gives π over the K
ops, α over the numeric and the word columns, per op a pointer β over the question numbers, and
γ over the question tokens. Every op runs on every column and every candidate pivot, and the
results are mixed by those probabilities (the paper's expectation over columns). Registers keep
their value where the step's probability went to ops of other types (the machine's rule):

    sel_t    = Σ_{k: Selection} π[k]·y_k + (1 − Σ_{k: Selection} π[k])·sel_{t−1}      (sel_0 = 1)
    scalar_t, lookup_t likewise                                             (both 0 at t = 0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from diffvm.interp.registry import Op, primitive
from diffvm.interp.types import Pointer, Scalar, Selection, Vector

__all__ = [
    "OP_NAMES", "TableError", "Table", "TableState", "TableRegisters", "TableChoice", "TableOpSpec", "TABLE_OPS",
    "table_ops", "encode_tables", "initial_registers", "table_step", "word_match_features",
]

class TableError(ValueError):
    """A table or a question about it is malformed; the message names the column, row or number."""


# --------------------------------------------------------------------------------------------
# Plain tables


@dataclass(frozen=True)
class Table:
    """A table of named columns: numeric (finite int/float cells) or words (str cells).

    Args:
        columns: name -> cells, in column order; every column has the same number of rows ≥ 1.
    Raises:
        TableError: no columns, ragged columns, a NaN/Inf cell, a column mixing numbers and words,
            a cell of another type; the message names the column and row.
    """

    columns: Mapping[str, tuple]

    def __post_init__(self):
        if not isinstance(self.columns, Mapping) or not self.columns:
            raise TableError("a table needs at least one column (a mapping name -> cells)")
        columns, rows = {}, None
        for name, cells in self.columns.items():
            if not isinstance(name, str) or not name:
                raise TableError(f"column name {name!r} must be a non-empty string")
            if isinstance(cells, (str, bytes)) or not isinstance(cells, Sequence):
                raise TableError(f"column {name!r}: cells must be a list, got {type(cells).__name__}")
            if rows is None:
                rows, first = len(cells), name
            elif len(cells) != rows:
                raise TableError(f"ragged table: column {name!r} has {len(cells)} rows but column {first!r} "
                                 f"has {rows}")
            columns[name] = tuple(_check_cells(name, cells))
        if rows == 0:
            raise TableError("a table needs at least one row")
        object.__setattr__(self, "columns", columns)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def is_numeric(self, column: int) -> bool:
        """Whether column `column` (an index into `names`) holds numbers."""
        return not isinstance(self.columns[self.names[column]][0], str)

    @property
    def numeric_columns(self) -> tuple[int, ...]:
        """Indices of the numeric columns, in order."""
        return tuple(j for j in range(len(self.names)) if self.is_numeric(j))

    @property
    def word_columns(self) -> tuple[int, ...]:
        """Indices of the word columns, in order."""
        return tuple(j for j in range(len(self.names)) if not self.is_numeric(j))

    def cell(self, row: int, column: int) -> float | str:
        return self.columns[self.names[column]][row]


def _check_cells(name: str, cells: Sequence) -> list:
    words = isinstance(cells[0], str) if len(cells) else False
    out = []
    for i, x in enumerate(cells):
        if words:
            if not isinstance(x, str):
                raise TableError(f"column {name!r} row {i}: {x!r} in a word column (row 0 is a word); "
                                 "expected a str")
            out.append(x)
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            raise TableError(f"column {name!r} row {i}: {x!r} is neither a number nor, as row 0 is a number, "
                             "allowed in this numeric column")
        elif not math.isfinite(x):
            raise TableError(f"column {name!r} row {i}: the cell is {x}; numeric cells must be finite")
        else:
            out.append(float(x))
    return out


class TableState(NamedTuple):
    """A batch of tables of one shape, as tensors.

    Attributes:
        numbers: (B, C, R) the numeric columns' cells.
        words: (B, V, R) the word columns' cells as vocabulary ids (floats, exact small integers).
    """

    numbers: torch.Tensor
    words: torch.Tensor

    @property
    def rows(self) -> int:
        return self.numbers.shape[-1]


def encode_tables(tables: Sequence[Table], vocabulary: Mapping[str, int], *, dtype=torch.float32,
                  device=None) -> TableState:
    """Stack tables with the same rows and the same numbers of numeric and word columns.

    Args:
        tables: B tables.
        vocabulary: word -> id; every word cell must be in it.
    Raises:
        TableError: tables of different shapes, or a word outside the vocabulary.
    """
    if not tables:
        raise TableError("encode_tables needs at least one table")
    shape = lambda t: (t.rows, len(t.numeric_columns), len(t.word_columns))  # noqa: E731
    for b, t in enumerate(tables):
        if shape(t) != shape(tables[0]):
            raise TableError(f"table {b} has (rows, numeric, word columns) = {shape(t)}, table 0 has "
                             f"{shape(tables[0])}; a batch needs tables of one shape")
    numbers = [[list(t.columns[t.names[j]]) for j in t.numeric_columns] for t in tables]
    words = []
    for b, t in enumerate(tables):
        ids = []
        for j in t.word_columns:
            for i, w in enumerate(t.columns[t.names[j]]):
                if w not in vocabulary:
                    raise TableError(f"table {b} column {t.names[j]!r} row {i}: word {w!r} is not in the vocabulary")
            ids.append([vocabulary[w] for w in t.columns[t.names[j]]])
        words.append(ids)
    rows, c, v = shape(tables[0])
    as_tensor = lambda x, n: torch.tensor(x, dtype=dtype, device=device).reshape(len(tables), n, rows)  # noqa: E731
    return TableState(as_tensor(numbers, c), as_tensor(words, v))  # (B, C, R), (B, V, R)


def word_match_features(words: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Whether each word cell equals each question token: (B, V, L, R) in {0, 1}.

    Args:
        words: (B, V, R) word ids of the cells.
        tokens: (B, L) word ids of the question's tokens.
    """
    return (words.unsqueeze(2) == tokens[:, None, :, None].to(words.dtype)).to(words.dtype)  # (B, V, L, R)


# --------------------------------------------------------------------------------------------
# The ops, as machine primitives


def _sum(column, selection):
    return (column * selection).sum(-1)


def _count(selection):
    return selection.sum(-1)


def _difference(a, b):
    return a - b


def _compare(relation):
    return lambda column, pivot: relation(column, pivot.unsqueeze(-1)).to(column.dtype)


def _beats(column: torch.Tensor, sign: int) -> torch.Tensor:
    """(B, R, R): [i, j] = 1 where row j's value beats row i's (sign +1: is larger, −1: smaller)."""
    diff = sign * (column.unsqueeze(-2) - column.unsqueeze(-1))  # (B, R, R): [i, j] = sign·(v[j] − v[i])
    return (diff > 0).to(column.dtype)


def _extreme(sign: int):
    def extreme(column, selection):
        # row i survives if selected and no selected row beats it: s[i]·Π_j (1 − beats[i, j]·s[j])
        beaten = _beats(column, sign) * selection.unsqueeze(-2)  # (B, R, R)
        return selection * torch.prod(1 - beaten, dim=-1)

    return extreme


def _and(a, b):
    return torch.minimum(a, b)


def _or(a, b):
    return torch.maximum(a, b)


def _none_before(selection: torch.Tensor) -> torch.Tensor:
    """Π_{j<i} (1 − s[j]) for every i: (B, R), 1 at i = 0."""
    kept = torch.cumprod(1 - selection, dim=-1)  # (B, R): Π_{j≤i}
    return F.pad(kept[..., :-1], (1, 0), value=1.0)


def _first(selection):
    return selection * _none_before(selection)


def _last(selection):
    return _first(selection.flip(-1)).flip(-1)


def _prev(selection):
    # row i is chosen when row i + 1 was: the row above each selected row
    return F.pad(selection[..., 1:], (0, 1))


def _next(selection):
    return F.pad(selection[..., :-1], (1, 0))


def _word_match(words, word):
    return (words == word.unsqueeze(-1)).to(words.dtype)


def _reset(selection):
    return torch.ones_like(selection)


def _print(column, selection):
    return (selection.unsqueeze(-1) * column.unsqueeze(-2)).flatten(-2)  # (B, R·C), cell (i, j) at i·C + j


@dataclass(frozen=True)
class TableOpSpec:
    """How the executor feeds one op (module docstring's table).

    Attributes:
        name: the op's short name.
        reads: per argument, where it comes from: "numbers" (a numeric column, α-mixed), "words" (a
            word column, α-mixed), "number" (a question number, β-mixed), "token" (a question
            token's word id, γ-mixed), "sel1"/"sel2" (the selection after step t−1 / t−2),
            "scalar1"/"scalar3" (the scalar after step t−1 / t−3), "column" (the column choice α).
        writes: "scalar", "selection" or "lookup".
    """

    name: str
    reads: tuple[str, ...]
    writes: str

    @property
    def column(self) -> str | None:
        """Which kind of column the op chooses ("numbers" or "words"), if any: print chooses a
        numeric column as its argument "column"; the others read the chosen column's cells."""
        if "words" in self.reads:
            return "words"
        return "numbers" if {"numbers", "column"} & set(self.reads) else None

    @property
    def reference(self) -> str | None:
        """Which question reference the op reads ("number" or "token"), if any."""
        return next((r for r in self.reads if r in ("number", "token")), None)


_CMP = {"greater": torch.gt, "lesser": torch.lt, "geq": torch.ge, "leq": torch.le}
# name -> (spec, soft meaning); every meaning is exact, so no op needs a separate hard meaning.
_MEANINGS = {
    "sum": (("numbers", "sel1"), "scalar", _sum),
    "count": (("sel1",), "scalar", _count),
    "difference": (("scalar3", "scalar1"), "scalar", _difference),
    **{name: (("numbers", "number"), "selection", _compare(rel)) for name, rel in _CMP.items()},
    "max": (("numbers", "sel1"), "selection", _extreme(1)),
    "min": (("numbers", "sel1"), "selection", _extreme(-1)),
    "and": (("sel2", "sel1"), "selection", _and),
    "or": (("sel2", "sel1"), "selection", _or),
    "first": (("sel1",), "selection", _first),
    "last": (("sel1",), "selection", _last),
    "prev": (("sel1",), "selection", _prev),
    "next": (("sel1",), "selection", _next),
    "word_match": (("words", "token"), "selection", _word_match),
    "reset": (("sel1",), "selection", _reset),
    "print": (("column", "sel1"), "lookup", _print),
}
OP_NAMES: tuple[str, ...] = tuple(_MEANINGS)
TABLE_OPS: dict[str, TableOpSpec] = {n: TableOpSpec(n, reads, writes) for n, (reads, writes, _) in _MEANINGS.items()}
_REGISTERED: dict[tuple[int, int], dict[str, Op]] = {}
_ROW_OPS: dict[int, dict[str, Op]] = {}


def _types(reads: tuple[str, ...], rows: int, columns: int):
    kind = {"numbers": Vector[rows], "words": Vector[rows], "sel1": Selection[rows], "sel2": Selection[rows],
            "number": Scalar, "token": Scalar, "scalar1": Scalar, "scalar3": Scalar, "column": Pointer[columns]}
    return tuple(kind[r] for r in reads)


def table_ops(rows: int, columns: int = 1) -> dict[str, Op]:
    """The table ops for tables of `rows` rows and `columns` numeric columns, by short name.

    Registered on the first call as `table{R}::<name>` (`print`: `table{R}x{C}::print`, the one
    op whose shape depends on C); later calls return the same ops.

    Raises:
        ValueError: rows or columns not an int ≥ 1.
    """
    for what, n in (("rows", rows), ("columns", columns)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"table_ops: {what} must be an int ≥ 1, got {n!r}")
    if (rows, columns) not in _REGISTERED:
        if rows not in _ROW_OPS:
            _ROW_OPS[rows] = {
                name: primitive(f"table{rows}::{name}", inputs=_types(reads, rows, 1),
                                output=_output(writes, rows, 1))(fn)
                for name, (reads, writes, fn) in _MEANINGS.items() if writes != "lookup"
            }
        reads, writes, fn = _MEANINGS["print"]
        printer = primitive(f"table{rows}x{columns}::print", inputs=_types(reads, rows, columns),
                            output=_output(writes, rows, columns))(fn)
        _REGISTERED[rows, columns] = {n: _ROW_OPS[rows][n] if n != "print" else printer for n in OP_NAMES}
    return _REGISTERED[rows, columns]


def _output(writes: str, rows: int, columns: int):
    return {"scalar": Scalar, "selection": Selection[rows], "lookup": Selection[rows * columns]}[writes]


# --------------------------------------------------------------------------------------------
# Soft execution


class TableRegisters(NamedTuple):
    """The registers after a step.

    Attributes:
        selection: (B, R) row_select, the rows selected.
        scalar: (B,) the scalar answer.
        lookup: (B, R, C) the lookup answer: probability that each numeric cell is printed.
    """

    selection: torch.Tensor
    scalar: torch.Tensor
    lookup: torch.Tensor


class TableChoice(NamedTuple):
    """One step's soft choices (what the controller emits).

    Attributes:
        op: (B, K) π over the K ops of the executed op list.
        numbers: (B, C) α over the numeric columns.
        words: (B, V) α over the word columns.
        number: (B, K, Q) per op, β over the question numbers (rows of ops without a pivot unused).
        token: (B, L) γ over the question tokens (word_match's word).
    """

    op: torch.Tensor
    numbers: torch.Tensor
    words: torch.Tensor
    number: torch.Tensor
    token: torch.Tensor


def initial_registers(batch: int, rows: int, columns: int, *, device=None, dtype=torch.float32) -> TableRegisters:
    """Every row selected, scalar and lookup answers 0 (the paper's initial values)."""
    return TableRegisters(torch.ones(batch, rows, device=device, dtype=dtype),
                          torch.zeros(batch, device=device, dtype=dtype),
                          torch.zeros(batch, rows, columns, device=device, dtype=dtype))


def table_step(
    ops: Sequence[str],
    choice: TableChoice,
    table: TableState,
    numbers: torch.Tensor,
    tokens: torch.Tensor,
    history: Sequence[TableRegisters],
) -> TableRegisters:
    """One soft step of the Neural Programmer (module docstring).

    Args:
        ops: the K op names π ranges over (a subset of `OP_NAMES`, in the controller's order).
        choice: the step's `TableChoice`.
        table: the batch's tables.
        numbers: (B, Q) the question numbers (padding positions must get zero β mass).
        tokens: (B, L) the question tokens' word ids (padding must get zero γ mass).
        history: the registers after steps 0 … t−1 (at least the initial ones).
    Returns:
        the registers after step t.
    """
    batch, c, rows = table.numbers.shape
    op_of = table_ops(rows, c)
    prev = history[-1]
    reg = lambda back: history[max(0, len(history) - back)]  # noqa: E731  (the registers after step t − back)
    out: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"scalar": [], "selection": [], "lookup": []}
    for k, name in enumerate(ops):
        spec, op = TABLE_OPS[name], op_of[name]
        y = _run(spec, op, choice, k, table, numbers, tokens, reg)
        out[spec.writes].append((choice.op[:, k], y))
    merged = []
    for kind, before in (("selection", prev.selection), ("scalar", prev.scalar), ("lookup", prev.lookup.flatten(1))):
        if not out[kind]:
            merged.append(before)
            continue
        w = torch.stack([p for p, _ in out[kind]], dim=1)  # (B, K_kind)
        ys = torch.stack([y.reshape(batch, -1) for _, y in out[kind]])  # (K_kind, B, D)
        flat = before.reshape(batch, -1)
        merged.append(((w.T.unsqueeze(-1) * ys).sum(0) + (1 - w.sum(1, keepdim=True)) * flat).reshape(before.shape))
    selection, scalar, lookup = merged
    return TableRegisters(selection, scalar, lookup.reshape(prev.lookup.shape))


def _run(spec, op, choice, k, table, numbers, tokens, reg) -> torch.Tensor:
    """Op k's soft result, mixed over the columns and references it reads: (B, *output shape)."""
    batch, c, rows = table.numbers.shape
    registers = {"sel1": reg(1).selection, "sel2": reg(2).selection, "scalar1": reg(1).scalar,
                 "scalar3": reg(3).scalar, "column": choice.numbers}
    if not {"numbers", "words"} & set(spec.reads):  # registers only (print's column choice is one)
        return op(*(registers[r] for r in spec.reads))
    columns, alpha = (table.numbers, choice.numbers) if spec.column == "numbers" else (table.words, choice.words)
    n = columns.shape[1]
    if spec.reference is None:  # a column and registers: run on every column
        other = [registers[r].unsqueeze(1).expand(batch, n, *registers[r].shape[1:]).reshape(batch * n, -1)
                 for r in spec.reads[1:]]
        y = op(columns.reshape(batch * n, rows), *other).reshape(batch, n, *op.output.shape)  # (B, n, ...)
        return torch.einsum("bn,bn...->b...", alpha, y)
    values, weights = (numbers, choice.number[:, k]) if spec.reference == "number" else (tokens.to(columns.dtype),
                                                                                        choice.token)
    q = values.shape[1]
    cols = columns.unsqueeze(2).expand(batch, n, q, rows).reshape(batch * n * q, rows)
    pivots = values.unsqueeze(1).expand(batch, n, q).reshape(batch * n * q)
    y = op(cols, pivots).reshape(batch, n, q, rows)  # (B, n, Q, R)
    return torch.einsum("bn,bq,bnqr->br", alpha, weights, y)  # (B, R)
