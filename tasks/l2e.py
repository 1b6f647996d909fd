"""Learning to Execute (Zaremba & Sutskever 2014): the program distribution, its four curricula,
the addition and memorisation tasks, and the character vocabulary.

A program chains `nesting` operations, each drawn uniformly from six kinds. The previous
operation's expression fills one operand slot of the next, chosen uniformly; every other operand
is a constant uniform in [1, 10**length]. "Small" numbers (a multiplier, a loop count) are uniform
in [1, 4·length]; variables are distinct letters a–j in a random order.

| kind          | statements added                          | expression passed on         |
|---------------|-------------------------------------------|------------------------------|
| `pair`        |                                           | `(a+b)` or `(a-b)`           |
| `small_mul`   |                                           | `(a*k)` or `(k*a)`           |
| `identity`    |                                           | `a`                          |
| `variable`    | `v=a;`                                    | `(v+b)` or `(v-b)`           |
| `small_loop`  | `v=a`, `for x in range(k):v+=b` (or `-=`) | `v`                          |
| `conditional` |                                           | `(c if a>b else d)` (or `<`) |

The last expression is printed. Text: statements joined by "#", then `print(EXPR)`, then "@";
the target is the printed integer then "." (`25011.`). Every choice above is one fair draw.

Curricula give each example's (length, nesting) from the target (a, b) and, for the ones that
grow, the current stage (l, n): baseline (a, b); naive (l, n); mix, length uniform in [1, a] and
nesting uniform in [1, b]; combined, mix with probability 1/5, else naive. The authors' code
draws mix's length afresh for every operand of an example; we draw (length, nesting) once per
example, as the paper describes.

Everything random comes from an injected `numpy.random.Generator`: the same seed gives the same
examples.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from diffvm.programs.snippets import (
    Assign,
    AugAssign,
    BinOp,
    Compare,
    Expr,
    IfExp,
    Loop,
    Name,
    Num,
    Snippet,
    evaluate,
    format_snippet,
)

__all__ = [
    "COMBINED_MIX_PROBABILITY", "Curriculum", "Example", "MAX_LENGTH", "MAX_NESTING", "OPERATIONS",
    "SPLITS", "STRATEGIES", "TASKS", "VOCABULARY", "VARIABLES", "addition_example", "decode", "encode",
    "memorisation_example", "program_example", "sample_examples", "sample_snippet", "split_of",
]

OPERATIONS = ("pair", "small_mul", "identity", "variable", "small_loop", "conditional")
VARIABLES = "abcdefghij"  # each variable or loop operation takes a fresh one
LOOP_VARIABLE = "x"
SMALL_FACTOR = 4  # small numbers (multipliers, loop counts) are uniform in [1, SMALL_FACTOR·length]
# Constants are drawn as 64-bit integers, uniform in [1, 10**length].
MAX_LENGTH = 18
# At most one fresh variable per operation, and there are ten.
MAX_NESTING = len(VARIABLES)
STRATEGIES = ("baseline", "naive", "mix", "combined")
COMBINED_MIX_PROBABILITY = 0.2  # combined: an example comes from mix with probability 1/5
TASKS = ("programs", "addition", "memorisation")
# The authors keep training, validation and test disjoint: an example belongs to the split its
# text's hash picks (crc32 modulo 3 here).
SPLITS = ("train", "validation", "test")
# The 42 characters of the data: digits, the letters of the keywords and variables, punctuation.
VOCABULARY = "0123456789abcdefghijlnoprstx()+-*=<>:;#@. "
_INDEX = {c: i for i, c in enumerate(VOCABULARY)}


@dataclass(frozen=True)
class Example:
    """One input/output pair.

    Attributes:
        text: the input, e.g. "j=8584#for x in range(8):j+=920#b=(1500+j);#print((b+7567))@".
        target: the expected output, e.g. "25011.".
        operations: for a program, the kinds of its operations in order (see `OPERATIONS`).
    """

    text: str
    target: str
    operations: tuple[str, ...] = ()


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_LENGTH:
        raise ValueError(f"length must be an int in [1, {MAX_LENGTH}] (digits of the constants), got {length!r}")


def _check_nesting(nesting: int) -> None:
    if isinstance(nesting, bool) or not isinstance(nesting, int) or not 1 <= nesting <= MAX_NESTING:
        raise ValueError(f"nesting must be an int in [1, {MAX_NESTING}] (operations chained), got {nesting!r}")


def sample_snippet(rng: np.random.Generator, length: int, nesting: int) -> tuple[Snippet, tuple[str, ...]]:
    """A program from the published distribution (module docstring) and its operation kinds."""
    _check_length(length)
    _check_nesting(nesting)
    variables = iter(rng.permutation(list(VARIABLES)).tolist())
    coin = lambda: bool(rng.integers(2))  # noqa: E731
    small = lambda: int(rng.integers(1, SMALL_FACTOR * length + 1))  # noqa: E731
    statements: list[Assign | Loop] = []
    kinds: list[str] = []
    previous: Expr | None = None

    def operands(n: int) -> list[Expr]:
        """n operands: the previous operation's expression in a uniformly chosen slot, constants elsewhere."""
        values: list[Expr] = [Num(int(rng.integers(1, 10**length + 1))) for _ in range(n)]
        if previous is not None:
            values[int(rng.integers(n))] = previous
        return values

    for _ in range(nesting):
        kind = OPERATIONS[int(rng.integers(len(OPERATIONS)))]
        kinds.append(kind)
        if kind == "pair":
            a, b = operands(2)
            previous = BinOp("+" if coin() else "-", a, b)
        elif kind == "small_mul":
            (a,) = operands(1)
            k = Num(small())
            previous = BinOp("*", a, k) if coin() else BinOp("*", k, a)
        elif kind == "identity":
            (previous,) = operands(1)
        elif kind == "variable":
            v = next(variables)
            a, b = operands(2)
            statements.append(Assign(v, a))
            previous = BinOp("+" if coin() else "-", Name(v), b)
        elif kind == "small_loop":
            v = next(variables)
            a, b = operands(2)
            k = small()
            statements += [Assign(v, a), Loop(LOOP_VARIABLE, k, AugAssign(Name(v), "+" if coin() else "-", b))]
            previous = Name(v)
        else:  # conditional
            a, b, c, d = operands(4)
            previous = IfExp(Compare(">" if coin() else "<", a, b), c, d)
    return Snippet(tuple(statements), previous), tuple(kinds)


def _target(value: int) -> str:
    return f"{value}."


def program_example(rng: np.random.Generator, length: int, nesting: int) -> Example:
    """A program, in the original data's text, and its output."""
    snippet, kinds = sample_snippet(rng, length, nesting)
    return Example(format_snippet(snippet, "l2e"), _target(evaluate(snippet)), kinds)


def _exact_digits(rng: np.random.Generator, length: int) -> int:
    """A number of exactly `length` digits (0–9 for one digit)."""
    return int(rng.integers(10 ** (length - 1) if length > 1 else 0, 10**length))


def addition_example(rng: np.random.Generator, length: int) -> Example:
    """The addition task: `print(A+B)@` for two numbers of `length` digits, as in the paper's figure."""
    _check_length(length)
    a, b = _exact_digits(rng, length), _exact_digits(rng, length)
    return Example(f"print({a}+{b})@", _target(a + b))


def memorisation_example(rng: np.random.Generator, length: int) -> Example:
    """The memorisation task: output a number of `length` digits, given as `print(N)@`.

    The paper shows only the number; we wrap it as the program that prints it (what the identity
    operation generates), so that, as with programs, "@" ends the input.
    """
    _check_length(length)
    n = _exact_digits(rng, length)
    return Example(f"print({n})@", _target(n))


@dataclass(frozen=True)
class Curriculum:
    """Where each example's (length, nesting) comes from (module docstring).

    Attributes:
        strategy: one of `STRATEGIES`.
        target_length, target_nesting: the difficulty to reach, (a, b).
        length, nesting: the current stage (l, n) of the growing curricula, from (1, 1).
    """

    strategy: str
    target_length: int
    target_nesting: int
    length: int = 1
    nesting: int = 1

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        _check_length(self.target_length)
        _check_nesting(self.target_nesting)
        if not 1 <= self.length <= self.target_length:
            raise ValueError(f"length must be in [1, target_length={self.target_length}], got {self.length!r}")
        if not 1 <= self.nesting <= self.target_nesting:
            raise ValueError(f"nesting must be in [1, target_nesting={self.target_nesting}], got {self.nesting!r}")

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """One example's (length, nesting)."""
        strategy = self.strategy
        if strategy == "combined":
            strategy = "mix" if rng.random() < COMBINED_MIX_PROBABILITY else "naive"
        if strategy == "baseline":
            return self.target_length, self.target_nesting
        if strategy == "naive":
            return self.length, self.nesting
        return int(rng.integers(1, self.target_length + 1)), int(rng.integers(1, self.target_nesting + 1))

    @property
    def at_target(self) -> bool:
        return (self.length, self.nesting) == (self.target_length, self.target_nesting)

    def harder(self) -> Curriculum:
        """The next stage: one more digit, or, at the target length, one more nesting from length 1.

        At the target it stays there (the authors then decay the learning rate instead).
        """
        if self.length < self.target_length:
            return replace(self, length=self.length + 1)
        if self.nesting < self.target_nesting:
            return replace(self, length=1, nesting=self.nesting + 1)
        return self


def split_of(example: Example) -> str:
    """The split (`SPLITS`) an example belongs to, fixed by its text."""
    return SPLITS[zlib.crc32(f"{example.text}{example.target}".encode("ascii")) % len(SPLITS)]


def sample_examples(
    rng: np.random.Generator, count: int, curriculum: Curriculum, *, task: str = "programs",
    split: str | None = None,
) -> list[Example]:
    """`count` examples of `task`, each at the (length, nesting) the curriculum draws for it.

    Args:
        task: one of `TASKS`; addition and memorisation ignore the nesting.
        split: when given, only examples of that split (`split_of`), so splits never share one.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    examples = []
    while len(examples) < count:
        length, nesting = curriculum.draw(rng)
        if task == "programs":
            example = program_example(rng, length, nesting)
        elif task == "addition":
            example = addition_example(rng, length)
        else:
            example = memorisation_example(rng, length)
        if split is None or split_of(example) == split:
            examples.append(example)
    return examples


def encode(text: str) -> np.ndarray:
    """(T,) int64 the index in `VOCABULARY` of each character of `text`."""
    try:
        return np.array([_INDEX[c] for c in text], dtype=np.int64)
    except KeyError as e:
        i = next(i for i, c in enumerate(text) if c not in _INDEX)
        raise ValueError(f"character {e.args[0]!r} at index {i} is not in the vocabulary {VOCABULARY!r}") from None


def decode(ids) -> str:
    """The text of (T,) vocabulary indices."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"decode needs a 1-d array of integer indices, got shape {ids.shape} of {ids.dtype}")
    bad = (ids < 0) | (ids >= len(VOCABULARY))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"index {int(ids[i])} at position {i} is outside the vocabulary [0, {len(VOCABULARY)})")
    return "".join(VOCABULARY[i] for i in ids.tolist())
