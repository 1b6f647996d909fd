import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.interp import Bool, Instruction, Machine, OpSet, Scalar
from diffvm.interp.machine import Source
from diffvm.programs import Program, ProgramError, Step, discretise, run, run_trace

ABC = {"a": Scalar, "b": Scalar, "c": Scalar}


def _prog(*steps, constants=None, output=Scalar):
    return Program(ABC, output, [Step(op, tuple(args)) for op, args in steps], constants or {})


A, B, C = (Source("input", n) for n in "abc")
S = lambda k: Source("step", k)  # noqa: E731


def test_listing_reads_like_a_program():
    p = _prog(("arith::add", (A, B)), ("arith::mul", (S(1), C)))
    assert p.listing() == (
        "program(a: Scalar, b: Scalar, c: Scalar) -> Scalar:\n"
        "    s1 = arith::add(a, b)\n"
        "    s2 = arith::mul(s1, c)\n"
        "    return s2"
    )
    assert run(p, {"a": 2.0, "b": 3.0, "c": -4.0}) == -20.0


def test_a_step_reference_reads_the_register_of_the_type_it_is_read_as():
    p = _prog(("arith::add", (A, B)), ("cmp::greater", (A, B)), ("sel::where", (S(2), S(2), C)))
    # s2 as a Bool is a > b; s2 as a Scalar is the Scalar register after step 2, i.e. s1 = a + b
    assert run(p, {"a": 5.0, "b": 1.0, "c": 0.0}) == 6.0
    assert run(p, {"a": 1.0, "b": 5.0, "c": 7.0}) == 7.0
    assert p.result_step() == 3


_STEP = st.builds(
    lambda op, x, y: (op, (x, y)),
    st.sampled_from(["arith::add", "arith::sub", "arith::mul"]),
    st.sampled_from([A, B, C, Source("const", "k")]),
    st.sampled_from([A, B, C, S(0)]),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=4), st.integers(-5, 5))
def test_json_round_trip_is_the_identity(steps, k):
    p = _prog(*steps, constants={"k": (Scalar, float(k))})
    text = p.to_json()
    assert Program.from_json(text) == p
    assert json.loads(text)["format"] == "diffvm.program/1"


def _json(**changes):
    base = {"format": "diffvm.program/1", "inputs": {"a": "Scalar"}, "output": "Scalar",
            "steps": [{"op": "arith::add", "args": ["a", "a"]}]}
    base.update(changes)
    return json.dumps(base)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"line 1 column 2"),
        ("[1, 2]", "expected an object"),
        (_json(format="other/9"), "'format' must be"),
        (_json(inputs={"a": "Matrix"}), r"inputs.a: unknown value type 'Matrix'"),
        (_json(steps=[{"op": "arith::add"}]), r"steps\[0\]: expected"),
        (_json(steps=[{"op": "arith::add", "args": ["a", 3]}]), r"steps\[0\].args\[1\]: expected a string"),
        (_json(steps=[{"op": "arith::add", "args": ["a", "z"]}]), r"s1 \(arith::add\) argument 1: no input named 'z'"),
        (_json(steps=[{"op": "arith::add", "args": ["a", "s1"]}]), r"s1 is not an earlier step"),
        (_json(steps=[{"op": "arith::pow", "args": ["a", "a"]}]), r"step s1 \(arith::pow\): no op named 'arith::pow'"),
        (_json(steps=[{"op": "arith::add", "args": ["a"]}]), r"2 arguments expected, 1 given"),
        (_json(steps=[{"op": "logic::not", "args": ["a"]}]), r"argument 0: a is Scalar, the op expects Bool"),
        (_json(extra=1), r"unknown keys \['extra'\]"),
        (_json(constants={"k": {"type": "Pointer[3]", "value": 7}}), r"constants.k.value"),
    ],
)
def test_malformed_program_json_names_the_culprit(text, message):
    with pytest.raises(ProgramError, match=message):
        Program.from_json(text)


def test_a_program_naming_an_op_its_opset_lacks_is_refused():
    p = _prog(("arith::add", (A, B)), ("arith::mul", (S(1), C)))
    with pytest.raises(ProgramError, match=r"step s2 \(arith::mul\): op 'arith::mul' is not in the op set"):
        run(p, {"a": 1.0, "b": 2.0, "c": 3.0}, opset=OpSet(["arith::add", "arith::sub"]))


def test_bad_program_inputs_are_refused():
    p = _prog(("arith::add", (A, B)))
    with pytest.raises(ProgramError, match=r"missing \['c'\]"):
        run(p, {"a": 1.0, "b": 2.0})
    q = Program({"p": Bool}, Bool, [Step("logic::not", (Source("input", "p"),))])
    assert run(q, {"p": True}) is False
    with pytest.raises(ProgramError, match="program input 'a' = 'x' is not a Scalar"):
        run(p, {"a": "x", "b": 2.0, "c": 1.0})


def test_discretise_takes_argmaxes_and_names_the_step_that_wrote_the_type():
    m = Machine(OpSet(["arith::add", "cmp::greater", "sel::where"]), {"a": Scalar, "b": Scalar}, Scalar)
    dist = lambda hot, n: torch.softmax(torch.nn.functional.one_hot(torch.tensor([hot]), n) * 3.0, -1)  # noqa: E731
    # slots: (Scalar, 0), (Scalar, 1), (Bool, 0); Scalar sources a, b, s0, s1, …; Bool sources s0, s1, …
    trace = [
        Instruction(dist(0, 3), (dist(0, 3), dist(1, 3), dist(0, 1))),  # s1 = add(a, b)
        Instruction(dist(1, 3), (dist(0, 4), dist(1, 4), dist(0, 2))),  # s2 = greater(a, b)
        Instruction(dist(2, 3), (dist(4, 5), dist(1, 5), dist(2, 3))),  # where(s2, s2→s1, b)
    ]
    p = discretise(m, trace)
    assert [str(s) for s in p.steps] == ["arith::add(a, b)", "cmp::greater(a, b)", "sel::where(s2, s1, b)"]
    history = run_trace(p, {"a": 3.0, "b": 1.0})
    assert history[-1][Scalar] == 4.0
