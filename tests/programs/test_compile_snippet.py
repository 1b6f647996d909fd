import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.interp import Machine, Scalar
from diffvm.programs import Program, discretise, one_hot_trace, run
from diffvm.programs.compile_snippet import MAX_EXACT, SNIPPET_OPSET, compile_snippet, run_one_hot
from diffvm.programs.snippets import SnippetError, evaluate, operation_count, parse_snippet
from diffvm.tasks.l2e import sample_snippet


def test_the_papers_example_compiles_to_an_unrolled_loop():
    program = compile_snippet(parse_snippet("j=8584#for x in range(8):j+=920#b=(1500+j)#print((b+7567))@"))
    assert program.listing() == "\n".join([
        "program() -> Scalar:",
        "    const n8584: Scalar = 8584.0",
        "    const n920: Scalar = 920.0",
        "    const n1500: Scalar = 1500.0",
        "    const n7567: Scalar = 7567.0",
        "    s1 = arith::add(n8584, n920)",
        *(f"    s{k} = arith::add(s{k - 1}, n920)" for k in range(2, 9)),
        "    s9 = arith::add(n1500, s8)",
        "    s10 = arith::add(s9, n7567)",
        "    return s10",
    ])
    assert run(program, {}) == run_one_hot(program) == 25011


def test_a_conditional_compares_then_selects_and_later_comparisons_do_not_disturb_it():
    program = compile_snippet(parse_snippet("print(((7 if 1<2 else 8)*(5 if 6>7 else 9)))@"))
    assert [str(s) for s in program.steps] == [
        "cmp::less(n1, n2)", "sel::where(s1, n7, n8)", "cmp::greater(n6, n7)", "sel::where(s3, n5, n9)",
        "arith::mul(s2, s4)",
    ]
    assert run(program, {}) == run_one_hot(program) == 63


@pytest.mark.parametrize("text, value", [
    ("print(5)", 5),
    ("a=3#b=(a+1)#print(a)@", 3),
    ("a=1#b=(a if a>0 else 2)#print(a)@", 1),
])
def test_a_value_not_computed_last_is_copied_into_the_result(text, value):
    program = compile_snippet(parse_snippet(text))
    assert str(program.steps[-1]) == f"arith::add(n{value}, n0)"
    assert run(program, {}) == run_one_hot(program) == value


def test_a_loop_counter_becomes_a_constant_only_when_read():
    unread = compile_snippet(parse_snippet("a=1#for x in range(30):a+=2#print(a)@"))
    assert set(unread.constants) == {"n1", "n2"}
    read = compile_snippet(parse_snippet("a=0#for x in range(4):a+=x#print((a+x))@"))
    assert set(read.constants) == {"n0", "n1", "n2", "n3"}
    assert run(read, {}) == run_one_hot(read) == 9


@pytest.mark.parametrize("text, value", [
    ("a=94906265#print((a*a))@", 94906265**2),  # 2**53 − 1.2e8
    ("print((4503599627370496+4503599627370496))@", MAX_EXACT),
    ("print((0-9007199254740992))@", -MAX_EXACT),
    ("a=9007199254740991#for x in range(3):a-=1#print(((a-9007199254740000)*1000000))@", 988000000),
])
def test_values_up_to_2_to_the_53_are_exact_on_both_machines(text, value):
    program = compile_snippet(parse_snippet(text))
    assert evaluate(parse_snippet(text)) == value
    assert run(program, {}) == value
    assert run_one_hot(program) == value


def test_float32_would_not_be_exact_there():
    program = compile_snippet(parse_snippet("a=94906265#print((a*a))@"))
    assert run_one_hot(program, dtype=torch.float32) != 94906265**2 == run_one_hot(program)


@pytest.mark.parametrize("text", [
    "print((9007199254740992+1))@",
    "a=94906267#print((a*a))@",
    "print((1 if 1<2 else (99999999*99999999)))@",  # the branch not taken is computed too
])
def test_a_value_past_2_to_the_53_is_refused(text):
    with pytest.raises(SnippetError, match=r"exact only up to 2\*\*53"):
        compile_snippet(parse_snippet(text))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 3))
def test_sampled_programs_give_the_evaluators_answer_on_both_machines(seed, length, nesting):
    snippet, kinds = sample_snippet(np.random.default_rng(seed), length, nesting)
    program = compile_snippet(snippet)  # at length ≤ 9 and nesting ≤ 3 every value is below 2**53
    value = evaluate(snippet)
    assert run(program, {}) == value, (kinds, program.listing())
    assert run_one_hot(program) == value, (kinds, program.listing())
    # one step per operation, plus at most the copy into the result
    assert len(program.steps) - operation_count(snippet) in (0, 1)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_discretising_the_one_hot_trace_gives_the_program_back(seed, nesting):
    program = compile_snippet(sample_snippet(np.random.default_rng(seed), 4, nesting)[0])
    machine = Machine(SNIPPET_OPSET, program.inputs, program.output, program.constants)
    trace = one_hot_trace(machine, program)
    assert all(i.op.sum() == 1 and all(x.sum() == 1 for x in i.operands) for i in trace)
    assert discretise(machine, trace) == program


def test_compiled_programs_round_trip_through_json():
    program = compile_snippet(parse_snippet("a=5#for x in range(3):a-=(x if x>1 else 2)#print((a*7))@"))
    again = Program.from_json(program.to_json())
    assert again == program
    assert run(again, {}) == -7.0
    assert program.output == Scalar and program.inputs == {}
