import pytest
import sized_ops  # noqa: F401  (registers the sized-type test ops)
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from machine_equivalence import assert_soft_equals_hard, draw_one_hot_program

from diffvm.interp import (
    Bool,
    Instruction,
    Machine,
    OpSet,
    Pointer,
    Scalar,
    Selection,
    Vector,
    registered_ops,
)

ARITH = OpSet(["arith::add", "arith::sub", "arith::mul"])


def _machine(opset=ARITH):
    return Machine(opset, {"a": Scalar, "b": Scalar, "c": Scalar}, Scalar, constants={"one": (Scalar, 1.0)})


def _random_instruction(m, step, batch, g, dtype=torch.float64):
    soft = lambda n: torch.softmax(torch.randn(batch, n, generator=g, dtype=dtype), -1)  # noqa: E731
    return Instruction(soft(len(m.opset)), tuple(soft(m.num_sources(t, step)) for t, _ in m.opset.slots))


def _inputs(batch, g, dtype=torch.float64):
    return {n: torch.randn(batch, generator=g, dtype=dtype) for n in "abc"}


def test_step_shapes_and_sources():
    m = _machine()
    g = torch.Generator().manual_seed(0)
    state = m.initial_state(_inputs(5, g))
    assert state.tapes[Scalar].shape == (5, 5)  # a, b, c, one, s0
    for step in (1, 2):
        state = m.step(_random_instruction(m, step, 5, g), state)
        assert state.tapes[Scalar].shape == (5, 5 + step)
    assert [str(s) for s in m.sources(Scalar, 3)] == ["a", "b", "c", "one", "s0", "s1", "s2"]
    out, _ = m.run([_random_instruction(m, t, 5, g) for t in (1, 2)], _inputs(5, g))
    assert out.shape == (5,)


def test_step_values_match_a_plain_loop_over_the_equations():
    m = _machine()
    g = torch.Generator().manual_seed(1)
    inputs = _inputs(3, g)
    state = m.initial_state(inputs)
    first = _random_instruction(m, 1, 3, g)
    second = _random_instruction(m, 2, 3, g)
    got = m.step(second, m.step(first, state)).tapes[Scalar]
    fns = [lambda x, y: x + y, lambda x, y: x - y, lambda x, y: x * y]
    for b in range(3):
        tape = [inputs["a"][b].item(), inputs["b"][b].item(), inputs["c"][b].item(), 1.0, 0.0]
        for pi, alphas in (first, second):
            x = sum(alphas[0][b, s].item() * tape[s] for s in range(len(tape)))  # slot (Scalar, 0)
            y = sum(alphas[1][b, s].item() * tape[s] for s in range(len(tape)))  # slot (Scalar, 1)
            spent = sum(pi[b, k].item() for k in range(3))
            r = sum(pi[b, k].item() * fns[k](x, y) for k in range(3)) + (1 - spent) * tape[-1]
            tape.append(r)
        assert got[b].tolist() == pytest.approx(tape, rel=1e-12)


def test_step_gradients_float64():
    m = _machine(OpSet(["arith::add", "arith::mul", "cmp::greater", "sel::where"]))
    g = torch.Generator().manual_seed(2)
    inputs = _inputs(2, g)
    instr = _random_instruction(m, 1, 2, g)
    leaves = (*inputs.values(), instr.op, *instr.operands)
    leaves = tuple(x.clone().requires_grad_(True) for x in leaves)

    def f(a, b, c, op, *operands):
        state = m.step(Instruction(op, operands), m.initial_state({"a": a, "b": b, "c": c}))
        return tuple(state.tapes.values())

    assert torch.autograd.gradcheck(f, leaves)


def test_probability_on_other_types_keeps_a_register():
    m = Machine(OpSet(["arith::add", "cmp::greater"]), {"a": Scalar, "b": Scalar}, Scalar)
    state = m.initial_state({"a": torch.tensor([2.0]), "b": torch.tensor([3.0])})
    pick = lambda i, n: torch.nn.functional.one_hot(torch.tensor([i]), n).float()  # noqa: E731
    state = m.step(Instruction(pick(0, 2), (pick(0, 3), pick(1, 3))), state)  # s1 = a + b
    state = m.step(Instruction(pick(1, 2), (pick(0, 4), pick(1, 4))), state)  # a > b: Bool only
    assert state.register(Scalar).item() == 5.0  # kept
    assert state.register(Bool).item() == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())


def test_extreme_inputs_and_sharp_instructions_stay_finite():
    m = _machine(OpSet(["arith::add", "arith::mul", "cmp::greater", "cmp::less", "sel::where"]))
    g = torch.Generator().manual_seed(3)
    inputs = {n: (torch.randn(4, generator=g) * 1e4).requires_grad_(True) for n in "abc"}
    logits = [_random_instruction(m, t, 4, g, torch.float32) for t in (1, 2)]
    sharp = [Instruction(torch.softmax(i.op.log() * 1e4, -1), tuple(torch.softmax(x.log() * 1e4, -1)
             for x in i.operands)) for i in logits]
    out, state = m.run(sharp, inputs)
    out.sum().backward()
    assert all(torch.isfinite(v).all() for v in state.tapes.values())
    assert all(torch.isfinite(x.grad).all() for x in inputs.values())


def test_machine_errors_name_the_culprit():
    with pytest.raises(ValueError, match="no op of .* produces the output type Bool"):
        Machine(ARITH, {"a": Scalar}, Bool)
    with pytest.raises(ValueError, match="'s1' looks like a step reference"):
        Machine(ARITH, {"s1": Scalar}, Scalar)
    m = _machine()
    with pytest.raises(ValueError, match=r"missing \['c'\]"):
        m.initial_state({"a": torch.ones(2), "b": torch.ones(2)})
    with pytest.raises(TypeError, match="machine input 'b'"):
        m.initial_state({"a": torch.ones(2), "b": torch.ones(2, 3), "c": torch.ones(2)})
    state = m.initial_state(_inputs(2, torch.Generator()))
    bad = Instruction(torch.ones(2, 3) / 3, (torch.ones(2, 4) / 4, torch.ones(2, 5) / 5))
    with pytest.raises(ValueError, match=r"slot \(Scalar, 0\) distribution has shape \(2, 4\), expected \(2, 5\)"):
        m.step(bad, state)


# --- the invariant: one-hot instructions make the soft step the hard interpreter's step ----------

_PLAIN = {
    Scalar: st.integers(-9, 9).map(float),
    Bool: st.booleans(),
    Pointer[5]: st.integers(0, 4),
    Vector[5]: st.tuples(*[st.integers(-9, 9).map(float)] * 5),
    Selection[5]: st.tuples(*[st.booleans()] * 5),
}


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_one_hot_soft_steps_equal_the_hard_interpreter(data):
    # the ops over types we can draw plain values of (other test modules register ops over more)
    drawable = [o for o in registered_ops() if {*o.inputs, o.output} <= _PLAIN.keys()]
    ops = data.draw(st.lists(st.sampled_from(drawable), min_size=1, max_size=5,
                             unique_by=lambda o: o.name), label="ops")
    opset = OpSet(ops)
    types = list(opset.types)
    input_types = data.draw(st.lists(st.sampled_from(types), min_size=1, max_size=4), label="input types")
    inputs = {f"x{i}": t for i, t in enumerate(input_types)}
    machine = Machine(opset, inputs, data.draw(st.sampled_from(opset.output_types), label="output"),
                      constants={"two": (Scalar, 2.0)} if Scalar in types else {})
    plain_inputs = {n: data.draw(_PLAIN[t], label=n) for n, t in inputs.items()}
    trace, program = draw_one_hot_program(data, machine, data.draw(st.integers(1, 3), label="steps"))
    assert_soft_equals_hard(machine, trace, program, plain_inputs)
