import pytest
import sized_ops  # noqa: F401  (registers the sized-type test ops)
import torch

from diffvm.interp import (
    Bool,
    Machine,
    Op,
    OpCheckError,
    OpDefinitionError,
    OpSet,
    Scalar,
    Vector,
    check_op,
    get_op,
    primitive,
    registered_ops,
)


@pytest.mark.parametrize("op", registered_ops(), ids=lambda o: o.name)
def test_check_op_passes_for_every_registered_op(op):
    check_op(op)


def test_the_starter_library_is_registered():
    names = {o.name for o in registered_ops()}
    assert {"arith::add", "arith::sub", "arith::mul", "cmp::greater", "logic::and", "sel::where"} <= names


@pytest.mark.parametrize(
    "name, inputs, fn, message",
    [
        ("add", (Scalar, Scalar), lambda a, b: a + b, "must look like 'namespace::name'"),
        ("Arith::Add2", (Scalar, Scalar), lambda a, b: a + b, "must look like"),
        ("arith::add", (Scalar, Scalar), lambda a, b: a + b, "already registered"),
        ("testing::arity", (Scalar,), lambda a, b: a + b, "takes 2 positional arguments but 1 input types"),
        ("testing::varargs", (Scalar,), lambda *a: a[0], r"takes \*args"),
        ("testing::strtype", ("Scalar",), lambda a: a, "input 0: expected a value type"),
        ("testing::unsized", (Vector,), lambda a: a, r"Vector needs a size, e.g. Vector\[8\]"),
        ("testing::single", Scalar, lambda a: a, "inputs must be a tuple of types"),
        ("testing::nullary", (), lambda: torch.zeros(1), "takes no inputs; give the value as a machine constant"),
    ],
)
def test_malformed_op_definitions_are_refused_and_not_registered(name, inputs, fn, message):
    before = len(registered_ops())
    with pytest.raises(OpDefinitionError, match=message):
        primitive(name, inputs=inputs, output=Scalar)(fn)
    assert len(registered_ops()) == before


def test_a_hard_meaning_with_the_wrong_arity_is_refused():
    with pytest.raises(OpDefinitionError, match="hard function takes 1 positional"):
        primitive("testing::hard_arity", inputs=(Scalar, Scalar), output=Bool, hard=lambda a: a)(
            lambda a, b: a
        )


def test_a_result_of_the_wrong_shape_is_caught_at_the_machine_boundary():
    bad = Op("testing::bad_shape", (Scalar, Scalar), Scalar, lambda a, b: torch.stack([a, b], -1))
    m = Machine(OpSet([bad]), {"a": Scalar, "b": Scalar}, Scalar)
    state = m.initial_state({"a": torch.ones(4), "b": torch.ones(4)})
    instr = (torch.ones(4, 1), (torch.ones(4, 3) / 3, torch.ones(4, 3) / 3))
    message = r"op 'testing::bad_shape' result: type Scalar needs shape \(B\) but got \(4, 2\)"
    with pytest.raises(TypeError, match=message):
        m.step(instr, state)


def test_a_result_of_the_wrong_dtype_is_caught():
    bad = Op("testing::bad_type", (Scalar,), Scalar, lambda a: (a > 0))
    with pytest.raises(TypeError, match="'testing::bad_type' result: expected a floating tensor"):
        bad(torch.ones(3))


def test_check_op_reports_a_soft_meaning_that_disagrees_with_its_hard_one():
    liar = Op("testing::liar", (Scalar, Scalar), Bool, lambda a, b: torch.sigmoid(b - a),
              lambda a, b: (a > b).to(a.dtype))
    with pytest.raises(OpCheckError, match="'testing::liar'.*soft-to-hard agreement"):
        check_op(liar)


def test_check_op_reports_a_batch_dependent_op():
    leaky = Op("testing::leaky", (Scalar,), Scalar, lambda a: a - a.mean())
    with pytest.raises(OpCheckError, match="batch independence"):
        check_op(leaky)


def test_check_op_reports_a_wrong_gradient():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g * 3

    with pytest.raises(OpCheckError, match="gradcheck"):
        check_op(Op("testing::wrong_grad", (Scalar,), Scalar, Wrong.apply))


def test_opset_shares_operand_slots_by_type_and_position():
    s = OpSet(["arith::add", "arith::neg", "sel::where", "cmp::greater"])
    assert s.slots == ((Scalar, 0), (Scalar, 1), (Bool, 0))
    assert s.op_slots == ((0, 1), (0,), (2, 0, 1), (0, 1))
    assert s.output_types == (Scalar, Bool)


def test_opset_errors_name_the_culprit():
    with pytest.raises(KeyError, match="no op named 'arith::pow'"):
        OpSet(["arith::add", "arith::pow"])
    with pytest.raises(ValueError, match="names op.s. twice: arith::add"):
        OpSet(["arith::add", get_op("arith::add")])
    with pytest.raises(KeyError, match="not in this OpSet"):
        OpSet(["arith::add"]).index("arith::mul")
