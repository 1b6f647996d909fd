"""The Learning-to-Execute snippet language: its IR, parser, printer and reference evaluator.

Zaremba & Sutskever (2014) train sequence models to execute short programs in a subset of Python:
integer literals, variables, `+ - *`, conditional expressions comparing with `<`/`>`, assignments,
`for x in range(k):` loops whose body is one `v += e` or `v -= e`, and a final `print`. The grammar
(`snippet.lark`, shipped as package data) accepts both the original data's textual form and
ordinary multi-line Python; one Transformer builds the same IR from either:

    Snippet(statements=(Assign("j", Num(8584)),
                        Loop("x", 8, AugAssign(Name("j"), "+", Num(920))),
                        Assign("b", BinOp("+", Num(1500), Name("j")))),
            result=BinOp("+", Name("b"), Num(7567)))

`format_snippet(s, "l2e")` prints `j=8584#for x in range(8):j+=920#b=(1500+j);#print((b+7567))@`
(the ";" is the authors' generator's, see `format_snippet`) and `format_snippet(s, "lines")` the
multi-line form; parsing either gives `s` back.

Every `Snippet` is valid by construction: each name is assigned before it is read, expressions
nest at most `MAX_EXPRESSION_DEPTH` deep, and running it takes at most `MAX_OPERATIONS`
operations once loops are unrolled. Errors are `SnippetError`s (a `ValueError`) that give the line
and column where there is one. The parser rejects inputs longer than `MAX_SNIPPET_CHARS` before
reading them, so no input makes it slow.
"""

from __future__ import annotations

import functools
import keyword
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from lark import Lark, Token, UnexpectedCharacters, UnexpectedInput, UnexpectedToken, v_args
from lark.exceptions import VisitError
from lark.indenter import DedentError, Indenter
from lark.visitors import Transformer_NonRecursive

__all__ = [
    "Assign", "AugAssign", "BinOp", "Compare", "Expr", "IfExp", "Loop", "MAX_DIGITS",
    "MAX_EXPRESSION_DEPTH", "MAX_OPERATIONS", "MAX_SNIPPET_CHARS", "Name", "Num", "Snippet",
    "SnippetError", "Statement", "evaluate", "format_snippet", "largest_magnitude", "operation_count",
    "parse_snippet",
]

# Longer inputs are refused before parsing (the original data's programs are under 200 characters).
MAX_SNIPPET_CHARS = 16_384
# Expressions nest at most this deep, so the recursive evaluator, printer and compiler stay far
# below Python's recursion limit.
MAX_EXPRESSION_DEPTH = 100
# At most this many operations (+, -, *, comparisons, conditionals, loop updates) once loops are
# unrolled: this bounds evaluation time and the compiled machine program's length.
MAX_OPERATIONS = 10_000
# No literal or computed value may reach 10**MAX_DIGITS in magnitude, so no evaluation can build
# an astronomically large integer (repeated squaring would otherwise double its digits each time).
MAX_DIGITS = 100
_VALUE_BOUND = 10**MAX_DIGITS

# An error quotes its line at most this many characters either side of the column.
QUOTE_MARGIN = 60

BINARY_OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
COMPARISONS = {"<": operator.lt, ">": operator.gt}
UPDATES = ("+", "-")
INDENT = "    "  # the body of a loop in the multi-line form
# Words of the language that are not Python keywords but cannot name a variable either.
RESERVED = frozenset({"print", "range"})


class SnippetError(ValueError):
    """A snippet is outside the language or breaks one of its limits.

    Attributes:
        line, column: where (1-based), or None where no single place is to blame.
        expected: for a syntax error, descriptions of what could have come instead.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 expected: tuple[str, ...] = (), source: str | None = None):
        self.message, self.line, self.column, self.expected = message, line, column, expected
        text = message if line is None else f"line {line}, column {column}: {message}"
        if source is not None and line is not None:
            lines = source.splitlines() or [""]
            start = max(0, column - 1 - QUOTE_MARGIN)  # a window around the column of a long line
            shown = lines[min(line, len(lines)) - 1][start:column + QUOTE_MARGIN]
            text += f"\n    {shown}\n    {' ' * (column - 1 - start)}^"
        super().__init__(text)

    def with_source(self, source: str) -> SnippetError:
        """The same error with the offending line of `source` quoted under it."""
        return SnippetError(self.message, line=self.line, column=self.column, expected=self.expected,
                            source=source)


# --------------------------------------------------------------------------------------------
# The IR: frozen dataclasses, compared by value. Positions are kept for error messages only.


@dataclass(frozen=True)
class Num:
    """A non-negative integer literal."""

    value: int
    depth: ClassVar[int] = 1

    def __post_init__(self):
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 0:
            raise SnippetError(f"a literal must be a non-negative int, got {self.value!r}")
        if self.value >= _VALUE_BOUND:
            raise SnippetError(f"literal has more than {MAX_DIGITS} digits")


@dataclass(frozen=True)
class Name:
    """A read of variable `id`."""

    id: str
    line: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    column: int | None = field(default=None, compare=False, repr=False, kw_only=True)
    depth: ClassVar[int] = 1

    def __post_init__(self):
        if (not isinstance(self.id, str) or not self.id.isascii() or not self.id.isidentifier()
                or keyword.iskeyword(self.id) or self.id in RESERVED):
            raise SnippetError(f"{self.id!r} is not a variable name")


@dataclass(frozen=True)
class BinOp:
    """`left op right` with op one of + - *."""

    op: str
    left: Expr
    right: Expr
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        _check_operator(self.op, BINARY_OPERATORS, "binary operator")
        _set_depth(self, self.left, self.right)


@dataclass(frozen=True)
class Compare:
    """`left op right` with op `<` or `>`: the test of a conditional expression."""

    op: str
    left: Expr
    right: Expr
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        _check_operator(self.op, COMPARISONS, "comparison")
        _set_depth(self, self.left, self.right)


@dataclass(frozen=True)
class IfExp:
    """`body if test else orelse`."""

    test: Compare
    body: Expr
    orelse: Expr
    depth: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.test, Compare):
            raise SnippetError(f"the test of a conditional must be a Compare, got {self.test!r}")
        _set_depth(self, self.test, self.body, self.orelse)


Expr = Num | Name | BinOp | IfExp


@dataclass(frozen=True)
class Assign:
    """`target = value`."""

    target: str
    value: Expr

    def __post_init__(self):
        Name(self.target)  # raises unless the target is a variable name


@dataclass(frozen=True)
class AugAssign:
    """`target op= value` with op + or -: the body of a loop."""

    target: Name
    op: str
    value: Expr

    def __post_init__(self):
        _check_operator(self.op, UPDATES, "update")


@dataclass(frozen=True)
class Loop:
    """`for var in range(count): body`."""

    var: str
    count: int
    body: AugAssign

    def __post_init__(self):
        Name(self.var)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise SnippetError(f"a loop count must be a non-negative int, got {self.count!r}")


Statement = Assign | Loop


@dataclass(frozen=True)
class Snippet:
    """A program: statements, then `print(result)`. Valid by construction (module docstring)."""

    statements: tuple[Statement, ...]
    result: Expr

    def __post_init__(self):
        object.__setattr__(self, "statements", tuple(self.statements))
        for s in self.statements:
            if not isinstance(s, (Assign, Loop)):
                raise SnippetError(f"a statement must be an Assign or a Loop, got {s!r}")
        if not isinstance(self.result, (Num, Name, BinOp, IfExp)):
            raise SnippetError(f"the printed result must be an expression, got {self.result!r}")
        _check_names(self)
        count = operation_count(self)
        if count > MAX_OPERATIONS:
            raise SnippetError(f"the snippet runs {count} operations once its loops are unrolled, "
                               f"more than the limit of {MAX_OPERATIONS}")


def _check_operator(op: str, known, what: str) -> None:
    if op not in known:
        raise SnippetError(f"unknown {what} {op!r}; expected one of {', '.join(known)}")


def _set_depth(node, *children) -> None:
    depth = 1 + max(c.depth for c in children)
    if depth > MAX_EXPRESSION_DEPTH:
        raise SnippetError(f"expression nested more than {MAX_EXPRESSION_DEPTH} deep")
    object.__setattr__(node, "depth", depth)


def _children(e: Expr | Compare) -> tuple:
    match e:
        case BinOp() | Compare():
            return (e.left, e.right)
        case IfExp():
            return (e.test, e.body, e.orelse)
    return ()


def _names(e: Expr | Compare) -> Iterator[Name]:
    if isinstance(e, Name):
        yield e
    for child in _children(e):
        yield from _names(child)


def _operations(e: Expr | Compare) -> int:
    """Operations to evaluate `e`: one per +, -, *, comparison and conditional choice."""
    own = 0 if isinstance(e, (Num, Name)) else 1
    return own + sum(_operations(c) for c in _children(e))


def operation_count(snippet: Snippet) -> int:
    """Operations one run of `snippet` performs, loops unrolled (a loop's update counts as one)."""
    total = _operations(snippet.result)
    for s in snippet.statements:
        total += _operations(s.value) if isinstance(s, Assign) else s.count * (1 + _operations(s.body.value))
    return total


def _check_names(snippet: Snippet) -> None:
    """Raise `SnippetError` at the first name read before it is assigned.

    A loop binds its variable inside its body, and after the loop only if it ran at least once
    (as in Python). A loop body is checked even when it never runs, which is stricter than Python.
    """
    def check(e: Expr, defined: set[str], what: str = "used") -> None:
        for name in _names(e):
            if name.id not in defined:
                raise SnippetError(f"name {name.id!r} is {what} before it is assigned",
                                   line=name.line, column=name.column)

    defined: set[str] = set()
    for s in snippet.statements:
        if isinstance(s, Assign):
            check(s.value, defined)
            defined.add(s.target)
        else:
            inside = defined | {s.var}
            check(s.body.target, inside, "updated")
            check(s.body.value, inside)
            if s.count > 0:
                defined.add(s.var)
    check(snippet.result, defined)


# --------------------------------------------------------------------------------------------
# The reference evaluator


def _execute(snippet: Snippet) -> tuple[int, int]:
    """Run `snippet`; return its printed value and the largest magnitude of any value computed.

    Both branches of a conditional are evaluated (no expression has side effects, so the result
    is Python's), which makes the magnitude cover every value the compiled machine program
    computes: it computes both branches and selects one.
    """
    largest = 0

    def seen(v: int) -> int:
        nonlocal largest
        if abs(v) >= _VALUE_BOUND:
            raise SnippetError(f"a value has more than {MAX_DIGITS} digits, past the snippet language's bound")
        largest = max(largest, abs(v))
        return v

    def value(e: Expr, env: dict[str, int]) -> int:
        match e:
            case Num():
                return seen(e.value)
            case Name():
                return env[e.id]
            case BinOp():
                return seen(BINARY_OPERATORS[e.op](value(e.left, env), value(e.right, env)))
            case IfExp():
                test = COMPARISONS[e.test.op](value(e.test.left, env), value(e.test.right, env))
                body, orelse = value(e.body, env), value(e.orelse, env)
                return body if test else orelse
        raise TypeError(f"not a snippet expression: {e!r}")

    env: dict[str, int] = {}
    for s in snippet.statements:
        if isinstance(s, Assign):
            env[s.target] = value(s.value, env)
            continue
        update = BINARY_OPERATORS[s.body.op]
        for i in range(s.count):
            env[s.var] = seen(i)
            env[s.body.target.id] = seen(update(env[s.body.target.id], value(s.body.value, env)))
    return value(snippet.result, env), largest


def evaluate(snippet: Snippet) -> int:
    """The value `snippet` prints, computed exactly on Python integers."""
    return _execute(snippet)[0]


def largest_magnitude(snippet: Snippet) -> int:
    """The largest |v| over every value a run computes: literals, loop counters, results."""
    return _execute(snippet)[1]


# --------------------------------------------------------------------------------------------
# The printer

STYLES = ("lines", "l2e")
# How tightly Python binds each form: the conditional loosest (0), then + and -, then *, then
# literals and names (3).
_BINDING = {"+": 1, "-": 1, "*": 2}


def _precedence(e: Expr) -> int:
    match e:
        case IfExp():
            return 0
        case BinOp():
            return _BINDING[e.op]
    return 3


def _python(e: Expr, least: int = 0) -> str:
    """`e` with the fewest parentheses that parse back to `e` (wrapped if it binds looser than `least`)."""
    match e:
        case Num():
            return str(e.value)
        case Name():
            return e.id
        case BinOp():
            p = _precedence(e)
            text = f"{_python(e.left, p)} {e.op} {_python(e.right, p + 1)}"  # left-associative
        case IfExp():
            test = f"{_python(e.test.left, 1)} {e.test.op} {_python(e.test.right, 1)}"
            text = f"{_python(e.body, 1)} if {test} else {_python(e.orelse, 0)}"
    return f"({text})" if _precedence(e) < least else text


def _l2e(e: Expr) -> str:
    """`e` as the original data writes it: every operation in parentheses, no spaces."""
    match e:
        case Num():
            return str(e.value)
        case Name():
            return e.id
        case BinOp():
            return f"({_l2e(e.left)}{e.op}{_l2e(e.right)})"
        case IfExp():
            return f"({_l2e(e.body)} if {_l2e(e.test.left)}{e.test.op}{_l2e(e.test.right)} else {_l2e(e.orelse)})"


def format_snippet(snippet: Snippet, style: str = "lines") -> str:
    """`snippet` as text that parses back to it.

    Args:
        style: "lines", ordinary multi-line Python ending with a newline; or "l2e", the original
            data's form: statements joined by "#", "@" at the end. The authors' generator ends a
            variable operation's assignment with ";" but not a loop's initialisation; printing ";"
            after every assignment that does not open a loop on its variable reproduces their text.
    """
    if style not in STYLES:
        raise ValueError(f"unknown snippet style {style!r}; expected one of {', '.join(STYLES)}")
    statements = snippet.statements
    parts = []
    for s, following in zip(statements, (*statements[1:], None)):
        if isinstance(s, Assign) and style == "lines":
            parts.append(f"{s.target} = {_python(s.value)}")
        elif isinstance(s, Assign):
            opens_loop = isinstance(following, Loop) and following.body.target.id == s.target
            parts.append(f"{s.target}={_l2e(s.value)}{'' if opens_loop else ';'}")
        elif style == "lines":
            b = s.body
            parts.append(f"for {s.var} in range({s.count}):\n{INDENT}{b.target.id} {b.op}= {_python(b.value)}")
        else:
            parts.append(f"for {s.var} in range({s.count}):{s.body.target.id}{s.body.op}={_l2e(s.body.value)}")
    if style == "lines":
        return "\n".join([*parts, f"print({_python(snippet.result)})"]) + "\n"
    return "#".join([*parts, f"print({_l2e(snippet.result)})"]) + "@"


# --------------------------------------------------------------------------------------------
# The parser


@v_args(inline=True)
class SnippetBuilder(Transformer_NonRecursive):
    """Builds the IR from the parse tree: one method per rule alias of `snippet.lark`.

    Non-recursive, so a long chain such as `1+1+…+1` cannot exhaust Python's stack before the
    depth limit of the IR refuses it.
    """

    def snippet(self, *parts):
        return Snippet(parts[:-1], parts[-1])

    def assign(self, target: Token, value):
        return Assign(str(target), value)

    def loop(self, var: Token, count: Token, body: AugAssign):
        return Loop(str(var), _integer(count), body)

    def aug_assign(self, target: Token, op: Token, value):
        return AugAssign(self.name(target), op[0], value)

    def ifexp(self, body, test: Compare, orelse):
        return IfExp(test, body, orelse)

    def compare(self, left, op: Token, right):
        return Compare(str(op), left, right)

    def binop(self, left, op: Token, right):
        return BinOp(str(op), left, right)

    def num(self, token: Token):
        return Num(_integer(token))

    def name(self, token: Token):
        return Name(str(token), line=token.line, column=token.column)


def _integer(token: Token) -> int:
    if len(token.lstrip("0")) > MAX_DIGITS:  # checked before int(), which refuses very long strings
        raise SnippetError(f"number has more than {MAX_DIGITS} digits")
    return int(token)


class _SnippetIndenter(Indenter):
    """Python's indentation rule for a loop body on its own line; an inconsistent dedent is a
    `SnippetError` at the line it happens on."""

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR"]
    CLOSE_PAREN_types = ["RPAR"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token: Token):
        try:
            yield from super().handle_NL(token)
        except DedentError:
            raise SnippetError("the indentation matches no enclosing block",
                               line=token.end_line, column=token.end_column) from None


def _refuse_python_keyword(token: Token) -> Token:
    """Keywords of Python outside the language (`while`, `def`, `import`, …) are refused by name."""
    if keyword.iskeyword(token):
        raise SnippetError(f"{str(token)!r} is a Python keyword outside the snippet language, which has "
                           "assignments, for x in range(k) loops with += or -=, and print",
                           line=token.line, column=token.column)
    return token


@functools.cache
def _parser() -> Lark:
    return Lark.open_from_package(
        "diffvm.programs", "snippet.lark", parser="lalr", start="snippet", postlex=_SnippetIndenter(),
        propagate_positions=True, lexer_callbacks={"NAME": _refuse_python_keyword},
    )


# How a syntax error names the terminals of the grammar that are not literal strings.
_TERMINALS = {
    "NAME": "a name", "INT": "a number", "AUGOP": "'+=' or '-='", "ADDOP": "'+' or '-'",
    "MULOP": "'*'", "CMPOP": "'<' or '>'", "_NL": "a newline", "_INDENT": "an indented line",
    "_DEDENT": "the end of the indented block", "$END": "the end of the snippet",
}


def _describe_terminal(name: str) -> str:
    if name in _TERMINALS:
        return _TERMINALS[name]
    return repr(_parser().get_terminal(name).pattern.value)


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of the snippet"
    if token.type in ("NAME", "INT"):
        return f"{_TERMINALS[token.type].removeprefix('a ')} {str(token)!r}"
    if token.type in ("_NL", "_INDENT", "_DEDENT"):
        return {"_NL": "newline", "_INDENT": "indentation", "_DEDENT": "dedent"}[token.type]
    return repr(str(token))


def _syntax_error(e: UnexpectedInput) -> SnippetError:
    if isinstance(e, UnexpectedToken):
        token = e.token
        # the end, an indentation and a dedent are placed where the next statement starts
        at_end = token.type in ("$END", "_INDENT", "_DEDENT")
        line, column = (token.end_line, token.end_column) if at_end else (token.line, token.column)
        # what the parser accepts here; `e.expected` also holds lookaheads LALR merged in from other states
        unexpected, allowed = _describe_token(token), e.interactive_parser.accepts()
    elif isinstance(e, UnexpectedCharacters):
        line, column, unexpected, allowed = e.line, e.column, f"character {e.char!r}", e.allowed or ()
    else:  # UnexpectedEOF: the lexer ran out where a token was due
        line, column, unexpected, allowed = None, None, "end of the snippet", e.expected
    expected = tuple(sorted({_describe_terminal(t) for t in allowed}))
    return SnippetError(f"unexpected {unexpected}; expected {' or '.join(expected) or 'nothing'}",
                        line=line, column=column, expected=expected)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `text[index]`."""
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def parse_snippet(text: str) -> Snippet:
    """The IR of a snippet in either textual form (module docstring).

    Raises:
        SnippetError: with line, column and a quote of the line: a syntax error (saying what was
            expected), a name read before it is assigned, a non-ASCII character; without a
            position: an empty input, an input over `MAX_SNIPPET_CHARS`, a snippet over
            `MAX_OPERATIONS`.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_snippet needs a str, got {type(text).__name__}")
    if len(text) > MAX_SNIPPET_CHARS:
        raise SnippetError(f"the snippet has {len(text)} characters, more than the limit of {MAX_SNIPPET_CHARS}")
    if not text.isascii():
        index = next(i for i, c in enumerate(text) if not c.isascii())
        line, column = _position(text, index)
        raise SnippetError(f"non-ASCII character {ascii(text[index])} (U+{ord(text[index]):04X}); snippets are ASCII",
                           line=line, column=column, source=text)
    text = text.rstrip()  # trailing blank lines would otherwise indent the end of the snippet
    if not text:
        raise SnippetError("the snippet is empty; expected statements ending with print(EXPRESSION)")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e).with_source(text) from None
    except SnippetError as e:
        raise e.with_source(text) from None
    try:
        return SnippetBuilder().transform(tree)
    except VisitError as e:
        error = e.orig_exc
        if not isinstance(error, SnippetError):
            raise error from None
        if error.line is None and e.rule != "snippet":  # the node's place; a whole-snippet limit has none
            error = SnippetError(error.message, line=e.obj.meta.line, column=e.obj.meta.column)
        raise error.with_source(text) from None
