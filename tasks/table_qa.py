"""Synthetic table question answering, like the Neural Programmer's (Neelakantan et al. 2016 §4).

A question is drawn in three moves, all from an injected `numpy.random.Generator`:

1. a random table: R rows, C numeric columns of integers in [0, `max_value`) and V word columns,
   their names drawn from the grammar's `numcol` and `wordcol` vocabularies, cells from `word`;
2. a family, i.e. a rule of `table_questions.lark` (`single_*` or `comp_*`), expanded into text:
   literals as written, column names from the table, a NUMBER near a cell of the column named
   before it, a word from the word column named before it;
3. the text is parsed back with the same grammar; `_Meaning` turns the tree (its aliases) into
   the meaning, which is compiled into a T-step `TableProgram`: the reference program, whose
   hard run (`run_table_program`) gives the answer.

Numbers in the question become `q[0], q[1], …` in order and the token `<num>` in the text the
model reads; words are referred to by token position `w[k]`. `encode_questions` turns a batch
of questions on tables of one shape into tensors for the controller.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from lark import Lark, Token, Transformer, v_args
from lark.grammar import NonTerminal, Terminal
from lark.lexer import PatternStr

from diffvm.memory.table import Table, TableState, encode_tables
from diffvm.programs.table_program import TableAnswer, TableProgram, TableStep, run_table_program

__all__ = ["TableQAConfig", "TableQuestion", "TableQABatch", "TableQA", "SINGLE_FAMILIES", "COMPOSITIONAL_FAMILIES",
           "NUMBER_TOKEN", "PAD_TOKEN", "TABLE_QA_TASK", "vocabulary", "encode_questions", "reference_program"]

# The name `diffvm train` knows table QA by (it trains the Neural Programmer, controllers/np_cli.py).
TABLE_QA_TASK = "table_qa"

# The token that stands for a number in the text the model reads (the number itself goes to q).
NUMBER_TOKEN = "<num>"
PAD_TOKEN = "<pad>"
# Families are the grammar's rules with these prefixes.
SINGLE_PREFIX, COMPOSITIONAL_PREFIX = "single_", "comp_"
# A NUMBER slot is a cell of its column shifted by one of these: ties (geq vs greater) and misses.
PIVOT_OFFSETS = (-1, 0, 0, 1)


@functools.cache
def _parser() -> Lark:
    return Lark.open_from_package("diffvm.tasks", "table_questions.lark", parser="lalr", start="start",
                                  maybe_placeholders=False)


def _rules(origin: str) -> list:
    return [r for r in _parser().rules if r.origin.name == origin]


def _families(prefix: str) -> tuple[str, ...]:
    names = [e.name for r in _rules("question") for e in r.expansion]
    return tuple(n for n in names if n.startswith(prefix))


def _pool(origin: str) -> tuple[str, ...]:
    """The words a `!rule: "a" | "b"` of the grammar lists."""
    terminals = {t.name: t.pattern for t in _parser().terminals}
    return tuple(terminals[r.expansion[0].name].value for r in _rules(origin))


SINGLE_FAMILIES: tuple[str, ...] = _families(SINGLE_PREFIX)
COMPOSITIONAL_FAMILIES: tuple[str, ...] = _families(COMPOSITIONAL_PREFIX)


@functools.cache
def vocabulary() -> dict[str, int]:
    """Word -> id for every token a question or a word cell can hold (id 0 is `PAD_TOKEN`)."""
    words = {NUMBER_TOKEN}
    for t in _parser().terminals:
        if isinstance(t.pattern, PatternStr):
            words.update(t.pattern.value.split())
    return {w: i for i, w in enumerate([PAD_TOKEN, *sorted(words)])}


@dataclass
class TableQAConfig:
    """What the generator draws (module docstring)."""

    rows: int = 8  # R, rows per table
    numeric_columns: int = 3  # C
    word_columns: int = 1  # V
    max_value: int = 100  # numeric cells are integers in [0, max_value)
    steps: int = 4  # T, steps of the reference programs (the paper's T = 4)
    families: tuple[str, ...] = SINGLE_FAMILIES  # drawn uniformly

    def validate(self) -> None:
        """Raise `ValueError` naming the field whose value is out of range."""
        known = (*SINGLE_FAMILIES, *COMPOSITIONAL_FAMILIES)
        checks = {
            "rows": self.rows >= 1,
            "numeric_columns": 1 <= self.numeric_columns <= len(_pool("numcol")),
            "word_columns": 0 <= self.word_columns <= len(_pool("wordcol")),
            "max_value": self.max_value >= 1,
            "steps": self.steps >= 1,
            "families": len(self.families) > 0 and all(f in known for f in self.families),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TableQAConfig.{name} = {getattr(self, name)!r} is out of range"
                                 + (f" (known families: {', '.join(known)})" if name == "families" else ""))
        if self.word_columns == 0 and any("word" in f for f in self.families):
            raise ValueError("TableQAConfig.families: a word family needs word_columns ≥ 1")


@dataclass(frozen=True)
class TableQuestion:
    """One question about one table.

    Attributes:
        table: the table.
        family: the grammar rule it was drawn from.
        text: the question as written.
        tokens: the text's tokens as the model reads them (numbers as `NUMBER_TOKEN`).
        numbers: the question's numbers, q[0], q[1], …
        program: the reference program.
        answer: the reference program's hard run.
        slots: what was drawn for the template, in order: ("numcol", column index),
            ("wordcol", column index), ("word", str) or ("number", float).
    """

    table: Table
    family: str
    text: str
    tokens: tuple[str, ...]
    numbers: tuple[float, ...]
    program: TableProgram
    answer: TableAnswer
    slots: tuple[tuple[str, object], ...] = field(default=())

    @property
    def answer_kind(self) -> str:
        """"scalar" (count, sum, difference) or "lookup" (print)."""
        return self.program.answer_kind


# --------------------------------------------------------------------------------------------
# Meaning: parse tree -> nested meaning -> steps


@v_args(inline=True)
class _Meaning(Transformer):
    """Tree -> meaning, a nested tuple (op, *args); columns as table indices, refs as q/w indices."""

    def __init__(self, table: Table, number_at: dict[int, int], token_at: dict[int, int]):
        super().__init__()
        self.table, self.number_at, self.token_at = table, number_at, token_at

    def numcol(self, name: Token):
        return ("column", self.table.names.index(str(name)))

    wordcol = numcol

    def word(self, token: Token):
        return ("ref", self.token_at[token.start_pos])

    def NUMBER(self, token: Token):  # noqa: N802  (lark names terminal callbacks after the terminal)
        return ("ref", self.number_at[token.start_pos])

    def greater(self, col, ref):
        return ("greater", col[1], ref[1])

    def lesser(self, col, ref):
        return ("lesser", col[1], ref[1])

    def geq(self, col, ref):
        return ("geq", col[1], ref[1])

    def leq(self, col, ref):
        return ("leq", col[1], ref[1])

    def word_match(self, col, ref):
        return ("word_match", col[1], ref[1])

    def max(self, col):
        return ("max", col[1], ("all",))

    def min(self, col):
        return ("min", col[1], ("all",))

    def first(self):
        return ("first", ("all",))

    def last(self):
        return ("last", ("all",))

    def count(self, selection=("all",)):
        return ("count", selection)

    def sum(self, col, selection=("all",)):
        return ("sum", col[1], selection)

    def print(self, col, selection):
        return ("print", col[1], selection)

    def count_and(self, a, b):
        return ("count", ("and", a, b))

    def count_or(self, a, b):
        return ("count", ("or", a, b))

    def print_next(self, col, selection):
        return ("print", col[1], ("next", selection))

    def print_prev(self, col, selection):
        return ("print", col[1], ("prev", selection))

    def difference(self, a, b):
        return ("difference", a, b)


# Meaning nodes whose arguments are (column, reference), (column, selection) or (selection).
_PIVOTS = {"greater", "lesser", "geq", "leq", "word_match"}


def _compile(meaning: tuple, steps: list[TableStep]) -> None:
    """Append the steps computing `meaning` to `steps` (module docstring of table_program: a
    selection op reads the selection after the step before it, and/or the two before it)."""
    op = meaning[0]
    if op == "all":
        if steps:  # before step 1 every row is selected already
            steps.append(TableStep("reset"))
    elif op in _PIVOTS:
        steps.append(TableStep(op, meaning[1], meaning[2]))
    elif op in ("and", "or"):
        _compile(meaning[1], steps)
        _compile(meaning[2], steps)
        steps.append(TableStep(op))
    elif op == "difference":
        _compile(meaning[1], steps)
        before = len(steps)
        _compile(meaning[2], steps)
        # difference reads the scalars after steps t−3 and t−1: the second operand takes ≥ 2 steps
        for _ in range(2 - (len(steps) - before)):
            steps.insert(before, TableStep("reset"))
        steps.append(TableStep("difference"))
    elif op in ("count", "first", "last", "next", "prev"):
        _compile(meaning[-1], steps)
        steps.append(TableStep(op))
    else:  # sum, print, max, min: a column and a selection
        _compile(meaning[2], steps)
        steps.append(TableStep(op, meaning[1]))


def reference_program(meaning: tuple, steps: int) -> TableProgram:
    """The `steps`-step program of a meaning: its compiled steps after as many resets as it takes."""
    body: list[TableStep] = []
    _compile(meaning, body)
    if len(body) > steps:
        raise ValueError(f"the meaning {meaning} takes {len(body)} steps, more than T = {steps}")
    return TableProgram(tuple([TableStep("reset")] * (steps - len(body)) + body))


# --------------------------------------------------------------------------------------------
# The generator


class TableQA:
    """Draws tables and questions (module docstring).

    Args:
        config: a `TableQAConfig` (default: single-op families, 8 rows).
    """

    def __init__(self, config: TableQAConfig | None = None):
        self.config = config or TableQAConfig()
        self.config.validate()

    def table(self, rng: np.random.Generator, *, rows: int | None = None) -> Table:
        """A random table: numeric columns first, then word columns, names drawn without repeats."""
        cfg = self.config
        rows = cfg.rows if rows is None else rows
        numcols = rng.choice(_pool("numcol"), cfg.numeric_columns, replace=False)
        wordcols = rng.choice(_pool("wordcol"), cfg.word_columns, replace=False)
        words = _pool("word")
        columns = {str(n): [int(x) for x in rng.integers(0, cfg.max_value, rows)] for n in numcols}
        columns |= {str(n): [str(words[i]) for i in rng.integers(0, len(words), rows)] for n in wordcols}
        return Table(columns)

    def question(self, rng: np.random.Generator, *, rows: int | None = None,
                 family: str | None = None) -> TableQuestion:
        """A random question of `family` (default: drawn from the config's) on a random table."""
        family = family or str(rng.choice(self.config.families))
        table = self.table(rng, rows=rows)
        slots: list[tuple[str, object]] = []
        text = " ".join(_expand(NonTerminal(family), table, rng, slots))
        return self.parse(table, text, family=family, slots=tuple(slots))

    def parse(self, table: Table, text: str, *, family: str = "", slots=()) -> TableQuestion:
        """Read a question's text (the grammar's language) into a `TableQuestion` on `table`."""
        words = text.split(" ")
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
        token_at = {int(s): i for i, s in enumerate(starts)}
        is_number = [w.lstrip("-").isdigit() for w in words]
        number_at = {int(s): k for k, s in enumerate(s for s, n in zip(starts, is_number) if n)}
        numbers = tuple(float(w) for w, n in zip(words, is_number) if n)
        meaning = _Meaning(table, number_at, token_at).transform(_parser().parse(text))
        program = reference_program(meaning, self.config.steps)
        tokens = tuple(NUMBER_TOKEN if n else w for w, n in zip(words, is_number))
        return TableQuestion(table, family, text, tokens, numbers, program,
                             run_table_program(program, table, numbers, tokens), slots)

    def sample(self, rng: np.random.Generator, batch: int, *, rows: int | None = None,
               families: Sequence[str] | None = None) -> list[TableQuestion]:
        """`batch` questions on tables of `rows` rows (default: the config's), families drawn from
        `families` (default: the config's)."""
        fams = tuple(families or self.config.families)
        return [self.question(rng, rows=rows, family=str(rng.choice(fams))) for _ in range(batch)]


def _expand(symbol, table: Table, rng: np.random.Generator, slots: list) -> list[str]:
    """The text of one random expansion of `symbol`; slots filled from `table`, recorded in `slots`."""
    if isinstance(symbol, Terminal):
        pattern = {t.name: t.pattern for t in _parser().terminals}[symbol.name]
        if isinstance(pattern, PatternStr):
            return [pattern.value]
        column = [v for kind, v in slots if kind == "numcol"][-1]  # NUMBER: near a cell of the last column
        value = int(rng.choice(table.columns[table.names[column]])) + int(rng.choice(PIVOT_OFFSETS))
        slots.append(("number", float(value)))
        return [str(value)]
    name = symbol.name
    if name in ("numcol", "wordcol"):
        pool = table.numeric_columns if name == "numcol" else table.word_columns
        column = int(rng.choice(pool))
        slots.append((name, column))
        return [table.names[column]]
    if name == "word":
        column = [v for kind, v in slots if kind == "wordcol"][-1]
        word = str(rng.choice(table.columns[table.names[column]]))
        slots.append(("word", word))
        return [word]
    rules = _rules(name)
    rule = rules[int(rng.integers(len(rules)))]
    return [w for s in rule.expansion for w in _expand(s, table, rng, slots)]


# --------------------------------------------------------------------------------------------
# Tensors for the controller


class TableQABatch(NamedTuple):
    """A batch of questions on tables of one shape.

    Attributes:
        table: the tables (numbers (B, C, R), word ids (B, V, R)).
        tokens: (B, L) token ids, padded with 0 (`PAD_TOKEN`).
        token_mask: (B, L) bool, True at real tokens.
        numbers: (B, Q) the question numbers, padded with 0.
        number_positions: (B, Q) long, each number's token position (0 at padding).
        number_mask: (B, Q) bool, True at real numbers.
        column_names: (B, C) vocabulary ids of the numeric columns' names.
        word_column_names: (B, V) vocabulary ids of the word columns' names.
        scalar: (B,) the scalar answers (0 where the answer is a lookup).
        lookup: (B, R, C) 1 at the printed cells (all 0 where the answer is a scalar).
        is_scalar: (B,) bool, the answer's kind.
    """

    table: TableState
    tokens: torch.Tensor
    token_mask: torch.Tensor
    numbers: torch.Tensor
    number_positions: torch.Tensor
    number_mask: torch.Tensor
    column_names: torch.Tensor
    word_column_names: torch.Tensor
    scalar: torch.Tensor
    lookup: torch.Tensor
    is_scalar: torch.Tensor


def encode_questions(questions: Sequence[TableQuestion], *, dtype=torch.float32, device=None) -> TableQABatch:
    """Tensors for a batch of questions whose tables share one shape (`encode_tables`)."""
    vocab = vocabulary()
    b = len(questions)
    length = max(len(q.tokens) for q in questions)
    count = max(1, max(len(q.numbers) for q in questions))
    tokens = torch.zeros(b, length, dtype=torch.long)
    numbers = torch.zeros(b, count, dtype=dtype)
    positions = torch.zeros(b, count, dtype=torch.long)
    number_mask = torch.zeros(b, count, dtype=torch.bool)
    table = encode_tables([q.table for q in questions], vocab, dtype=dtype)
    rows, c = table.rows, table.numbers.shape[1]
    lookup = torch.zeros(b, rows, c, dtype=dtype)
    for i, q in enumerate(questions):
        tokens[i, :len(q.tokens)] = torch.tensor([vocab[w] for w in q.tokens])
        where = [k for k, w in enumerate(q.tokens) if w == NUMBER_TOKEN]
        numbers[i, :len(q.numbers)] = torch.tensor(q.numbers, dtype=dtype)
        positions[i, :len(where)] = torch.tensor(where, dtype=torch.long)
        number_mask[i, :len(where)] = True
        numeric = q.table.numeric_columns
        for row, col in q.answer.cells:
            lookup[i, row, numeric.index(col)] = 1
    names = lambda q, cols: [vocab[q.table.names[j]] for j in cols]  # noqa: E731
    is_scalar = torch.tensor([q.answer_kind == "scalar" for q in questions])
    scalar = torch.tensor([q.answer.scalar if s else 0.0 for q, s in zip(questions, is_scalar)], dtype=dtype)
    to = lambda x: x.to(device)  # noqa: E731
    return TableQABatch(
        TableState(to(table.numbers), to(table.words)), to(tokens), to(tokens != 0), to(numbers), to(positions),
        to(number_mask),
        to(torch.tensor([names(q, q.table.numeric_columns) for q in questions], dtype=torch.long)),
        to(torch.tensor([names(q, q.table.word_columns) for q in questions], dtype=torch.long).reshape(b, -1)),
        to(scalar), to(lookup), to(is_scalar),
    )
