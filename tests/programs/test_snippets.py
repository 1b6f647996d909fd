import functools
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diffvm.programs import run
from diffvm.programs.compile_snippet import MAX_EXACT, compile_snippet, run_one_hot
from diffvm.programs.snippets import (
    MAX_DIGITS,
    MAX_EXPRESSION_DEPTH,
    MAX_OPERATIONS,
    MAX_SNIPPET_CHARS,
    Assign,
    AugAssign,
    BinOp,
    Compare,
    IfExp,
    Loop,
    Name,
    Num,
    Snippet,
    SnippetError,
    evaluate,
    format_snippet,
    largest_magnitude,
    parse_snippet,
)
from diffvm.tasks.l2e import sample_snippet

# --- generated snippets ------------------------------------------------------------------------

NAMES = ("a", "b", "v", "x", "_t", "n1")


@functools.cache  # one strategy per set of names: building strategies is what costs in hypothesis
def exprs(names: tuple[str, ...]):
    leaves = st.integers(0, 99).map(Num)
    if names:
        leaves = leaves | st.sampled_from(names).map(Name)
    return st.recursive(leaves, lambda e: st.one_of(
        st.builds(BinOp, st.sampled_from("+-*"), e, e),
        st.builds(lambda op, left, right, body, orelse: IfExp(Compare(op, left, right), body, orelse),
                  st.sampled_from("<>"), e, e, e, e),
    ), max_leaves=6)


@st.composite
def snippets(draw):
    """Any valid snippet over a few names: assignments, loops of 0–4 rounds (their counter read or not)."""
    defined: list[str] = []
    statements = []
    for _ in range(draw(st.integers(0, 4))):
        if defined and draw(st.booleans()):
            var = draw(st.sampled_from(NAMES))
            inside = tuple(sorted({*defined, var}))
            count = draw(st.integers(0, 4))
            update = AugAssign(Name(draw(st.sampled_from(inside))), draw(st.sampled_from("+-")), draw(exprs(inside)))
            statements.append(Loop(var, count, update))
            if count and var not in defined:
                defined.append(var)
        else:
            target = draw(st.sampled_from(NAMES))
            statements.append(Assign(target, draw(exprs(tuple(defined)))))
            if target not in defined:
                defined.append(target)
    return Snippet(tuple(statements), draw(exprs(tuple(defined))))


def machine_sized(snippet: Snippet) -> bool:
    try:
        return largest_magnitude(snippet) <= MAX_EXACT
    except SnippetError:  # a value past 10**MAX_DIGITS
        return False


# CPython runs the snippets in a child process, never in the test process: each with only print
# and range as builtins, its printed text collected.
_CPYTHON = """
import contextlib, io, json, sys
printed = []
for source in json.load(sys.stdin):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(source, {"__builtins__": {"print": print, "range": range}})
    printed.append(out.getvalue())
json.dump(printed, sys.stdout)
"""


def cpython_prints(sources: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-I", "-c", _CPYTHON], input=json.dumps(sources), text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PAPER_L2E = "j=8584#for x in range(8):j+=920#b=(1500+j);#print((b+7567))@"
PAPER_LINES = "j = 8584\nfor x in range(8):\n    j += 920\nb = 1500 + j\nprint(b + 7567)\n"
PAPER_IR = Snippet(
    (Assign("j", Num(8584)), Loop("x", 8, AugAssign(Name("j"), "+", Num(920))),
     Assign("b", BinOp("+", Num(1500), Name("j")))),
    BinOp("+", Name("b"), Num(7567)),
)


# --- the two textual forms -------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    PAPER_L2E,
    PAPER_LINES,
    "j=8584#for x in range(8):j+=920#b=(1500+j)#print((b+7567))@\n",  # without the ';', as the paper prints it
    "j = 8584\nfor x in range(8): j += 920\n\nb = (1500 + j);\nprint((b + 7567))",
    "\r\nj=8584\r\nfor x in range(8):\r\n\tj+=920\r\nb=1500+j\r\nprint(b+7567)\r\n  \r\n",
], ids=["l2e", "lines", "l2e-without-semicolon", "python-mixed", "crlf-tabs-trailing-blanks"])
def test_both_textual_forms_parse_to_the_same_ir(text):
    assert parse_snippet(text) == PAPER_IR
    assert evaluate(PAPER_IR) == 25011


def test_printing_reproduces_the_original_data_and_plain_python():
    assert format_snippet(PAPER_IR, "l2e") == PAPER_L2E
    assert format_snippet(PAPER_IR, "lines") == PAPER_LINES


def test_precedence_and_associativity_are_pythons():
    ir = parse_snippet("print(1 - 2 - 3 * 4 * 5 + 6 if 7 < 8 else 9 if 1 > 2 else 3)")
    left = BinOp("-", BinOp("-", Num(1), Num(2)), BinOp("*", BinOp("*", Num(3), Num(4)), Num(5)))
    assert ir.result == IfExp(Compare("<", Num(7), Num(8)), BinOp("+", left, Num(6)),
                              IfExp(Compare(">", Num(1), Num(2)), Num(9), Num(3)))
    assert format_snippet(parse_snippet("print(1-(2-3)*(4+5))")) == "print(1 - (2 - 3) * (4 + 5))\n"


@settings(max_examples=150, deadline=None)
@given(snippets(), st.sampled_from(["lines", "l2e"]))
def test_printing_then_parsing_is_the_identity_on_the_ir(snippet, style):
    assert parse_snippet(format_snippet(snippet, style)) == snippet


# --- the evaluator against CPython and the machine -------------------------------------------


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(snippets(), min_size=25, max_size=25))
def test_evaluator_machine_and_cpython_agree_on_generated_snippets(batch):
    batch = [s for s in batch if machine_sized(s)]
    assume(batch)
    printed = cpython_prints([format_snippet(s, "lines") for s in batch])
    for snippet, python in zip(batch, printed):
        value = evaluate(snippet)
        program = compile_snippet(snippet)
        listing = f"{format_snippet(snippet)}\n{program.listing()}"
        assert python == f"{value}\n", listing
        assert run(program, {}) == value, listing
        assert run_one_hot(program) == value, listing


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_sampled_programs_mean_in_cpython_what_the_evaluator_says(seed):
    """The original data's text, "#" read as a newline and "@" dropped, is Python (how the authors
    checked their generator); so is the multi-line form."""
    rng = np.random.default_rng(seed)
    batch = [sample_snippet(rng, int(rng.integers(1, 10)), int(rng.integers(1, 5)))[0] for _ in range(40)]
    l2e = [format_snippet(s, "l2e").replace("#", "\n").removesuffix("@") for s in batch]
    printed = cpython_prints(l2e + [format_snippet(s, "lines") for s in batch])
    assert printed == [f"{evaluate(s)}\n" for s in batch] * 2


def test_a_conditional_evaluates_like_python_at_the_tie():
    assert evaluate(parse_snippet("print((1 if 5>5 else 2))@")) == 2
    assert evaluate(parse_snippet("print((1 if 5<5 else 2))@")) == 2


def test_a_loop_counter_takes_pythons_values():
    assert evaluate(parse_snippet("a=0#for x in range(4):a+=x#print((a*10+x))@")) == 63  # 0+1+2+3, then x = 3
    # the counter is reassigned each round, even when the body updates it; a zero-round loop binds nothing
    assert evaluate(parse_snippet("for v in range(3):v+=10#x=7#for x in range(0):x+=1#print((v+x))@")) == 19


# --- malformed snippets ------------------------------------------------------------------------


@pytest.mark.parametrize("text, message, line, column", [
    ("print((1+2)", r"unexpected end of the snippet; expected '\)'", 1, 12),
    ("a=1\nprint(a))", r"unexpected '\)'; expected ';' or '@' or a newline", 2, 9),
    ("a = 1\nwhile a > 0:\n    a -= 1\nprint(a)", r"'while' is a Python keyword outside the snippet language", 2, 1),
    ("import os\nprint(1)", r"'import' is a Python keyword", 1, 1),
    ("a = [1]\nprint(a)", r"unexpected character '\['", 1, 5),
    ("if 1 > 2:\n    a = 1\nprint(a)", r"'if' is a Python keyword outside the snippet language", 1, 1),
    ("a = 1\na += 1\nprint(a)", r"unexpected '\+='; expected '='", 2, 3),
    ("print(1 < 2)", r"unexpected '<'", 1, 9),
    ("print(0123)", r"unexpected number '123'", 1, 8),
    ("print(b)", r"name 'b' is used before it is assigned", 1, 7),
    ("a=b#print(a)@", r"name 'b' is used before it is assigned", 1, 3),
    ("for x in range(2):a+=1#print(1)@", r"name 'a' is updated before it is assigned", 1, 19),
    ("a=1#for x in range(0):a+=1#print(x)@", r"name 'x' is used before it is assigned", 1, 34),
    ("for x in range(0):\n    pass\nprint(x)", r"'pass' is a Python keyword", 2, 5),
    ("a=1\nfor x in range(2):\n        a+=1\n    a+=2\nprint(a)", r"the indentation matches no enclosing block", 4, 5),
    ("a=1\n  b=2\nprint(a)", r"unexpected indentation", 2, 3),
    ("a=1\nprint(a)\u00e9", r"non-ASCII character '\\xe9' \(U\+00E9\); snippets are ASCII", 2, 9),
    ("print(1)@25011.", r"unexpected number '25011'", 1, 10),
    ("print(" + "9" * (MAX_DIGITS + 1) + ")", rf"number has more than {MAX_DIGITS} digits", 1, 7),
    ("print(" + "1+" * MAX_EXPRESSION_DEPTH + "1)", rf"expression nested more than {MAX_EXPRESSION_DEPTH} deep", 1, 7),
], ids=["unbalanced-open", "unbalanced-close", "while", "import", "list", "if-statement", "augmented-outside-loop",
        "bare-comparison", "leading-zero", "undefined-read", "undefined-in-l2e", "undefined-update",
        "counter-of-empty-loop", "pass",
        "bad-dedent", "unexpected-indent", "non-ascii", "target-after-program", "long-literal", "deep-expression"])
def test_malformed_snippets_say_what_and_where(text, message, line, column):
    with pytest.raises(SnippetError, match=message) as info:
        parse_snippet(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert f"line {line}, column {column}: " in str(info.value)


def test_a_syntax_error_lists_the_expected_tokens_and_quotes_the_line():
    with pytest.raises(SnippetError) as info:
        parse_snippet("a=5#b=(a+#print(b)@")
    assert set(info.value.expected) == {"'('", "a name", "a number"}
    assert str(info.value).endswith("    a=5#b=(a+#print(b)@\n             ^")


@pytest.mark.parametrize("text, message", [
    ("", "the snippet is empty"),
    (" \n\t\n", "the snippet is empty"),
    ("a=1#for x in range(10001):a+=1#print(a)@", f"runs 10001 operations .* more than the limit of {MAX_OPERATIONS}"),
    ("a=1#for x in range(" + "9" * 50 + "):a+=1#print(a)@", "more than the limit"),
])
def test_inputs_past_the_language_limits_are_refused_without_a_position(text, message):
    with pytest.raises(SnippetError, match=message) as info:
        parse_snippet(text)
    assert info.value.line is None


@pytest.mark.parametrize("unit", ["a=1#", "(", "\u00e9", "\n"])
def test_a_megabyte_input_is_refused_quickly(unit):
    text = unit * (2**20 // len(unit))
    start = time.perf_counter()
    with pytest.raises(SnippetError, match=f"more than the limit of {MAX_SNIPPET_CHARS}"):
        parse_snippet(text)
    assert time.perf_counter() - start < 5  # refused by its length: a hang, not a slow machine, fails this


def test_the_longest_accepted_input_parses_in_linear_time():
    body = "a=1#" + "a=(a+1)#" * ((MAX_SNIPPET_CHARS - 20) // 8) + "print(a)@"
    assert len(body) <= MAX_SNIPPET_CHARS
    start = time.perf_counter()
    assert evaluate(parse_snippet(body)) == 1 + (MAX_SNIPPET_CHARS - 20) // 8
    assert time.perf_counter() - start < 30  # ~0.3 s here; LALR parsing is linear, a quadratic parse takes hours
    with pytest.raises(SnippetError, match="more than the limit"):
        parse_snippet(body + " " * (MAX_SNIPPET_CHARS + 1 - len(body)))


def test_values_past_the_language_bound_are_refused():
    squares = "a=" + "9" * 30 + "#" + "a=(a*a)#" * 3 + "print(a)@"  # 240 digits
    with pytest.raises(SnippetError, match=f"a value has more than {MAX_DIGITS} digits"):
        evaluate(parse_snippet(squares))


@pytest.mark.parametrize("build, message", [
    (lambda: Num(-1), "non-negative int"),
    (lambda: Num(True), "non-negative int"),
    (lambda: Name("for"), "'for' is not a variable name"),
    (lambda: Name("print"), "'print' is not a variable name"),
    (lambda: BinOp("/", Num(1), Num(2)), r"unknown binary operator '/'"),
    (lambda: Compare("==", Num(1), Num(2)), r"unknown comparison '=='"),
    (lambda: IfExp(Num(1), Num(1), Num(2)), "must be a Compare"),
    (lambda: AugAssign(Name("a"), "*", Num(2)), r"unknown update '\*'"),
    (lambda: Loop("x", -1, AugAssign(Name("x"), "+", Num(1))), "loop count must be a non-negative int"),
    (lambda: Snippet((Assign("a", Name("a")),), Num(0)), "name 'a' is used before it is assigned"),
    (lambda: Snippet((Num(1),), Num(0)), "a statement must be an Assign or a Loop"),
    (lambda: Snippet((), Compare("<", Num(1), Num(2))), "the printed result must be an expression"),
])
def test_the_ir_refuses_invalid_nodes(build, message):
    with pytest.raises(SnippetError, match=message):
        build()


def test_format_snippet_names_the_styles():
    with pytest.raises(ValueError, match="unknown snippet style 'python'; expected one of lines, l2e"):
        format_snippet(PAPER_IR, "python")
