"""Stack-RNN stacks (Joulin & Mikolov 2015): shapes, values against eq. 4–5 (with NO-OP) as a
plain loop, `check_device`, hard equivalence with P Python lists, the convex-hull invariant and
extreme inputs."""

import pytest
import sized_ops  # noqa: F401  (registers testing::vec_scale)
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from machine_equivalence import assert_soft_equals_hard, draw_one_hot_program

from diffvm.interp import Machine, OpSet, Scalar, Vector
from diffvm.interp.device import check_device
from diffvm.memory.stack_rnn import ACTIONS, EMPTY_VALUE, StackRNNStacks

PUSH, POP, NOOP = (ACTIONS.index(a) for a in ("push", "pop", "no-op"))


def _random_interface(device, batch, gen, dtype=torch.float64):
    logits = torch.randn(batch, device.stacks, len(ACTIONS), generator=gen, dtype=dtype)
    v = torch.rand(batch, device.stacks, device.width, generator=gen, dtype=dtype)
    return device.Interface(torch.softmax(logits, -1), v)


def _loop_step(stack, a, v, empty):
    """Eq. 4–5 with NO-OP for one stack of python floats (top first): stack [C][W], a [3], v [W]."""
    depth, width = len(stack), len(v)

    def element(i):  # s_{t-1}[i], the empty value below the bottom
        return stack[i] if i < depth else [empty] * width

    new = []
    for i in range(depth):
        above = v if i == 0 else stack[i - 1]
        new.append([a[PUSH] * above[w] + a[POP] * element(i + 1)[w] + a[NOOP] * stack[i][w] for w in range(width)])
    return new


def test_read_and_state_shapes():
    device = StackRNNStacks(stacks=3, depth=5, width=2, top_k=2)
    state = device.initial_state(4)
    assert state.contents.shape == (4, 3, 5, 2)
    assert device.interface_size == 3 * 3 + 3 * 2
    read, state = device(_random_interface(device, 4, torch.Generator().manual_seed(0), torch.float32), state)
    assert read.shape == (4, device.read_size) == (4, 3 * 2 * 2)
    assert state.contents.shape == (4, 3, 5, 2)


def test_defaults_follow_the_paper():
    device = StackRNNStacks(stacks=1, depth=4)
    assert (device.width, device.top_k, device.empty_value) == (1, 2, -1.0)


def test_soft_steps_match_the_equations_as_a_loop():
    device = StackRNNStacks(stacks=2, depth=4, width=2, top_k=3, empty_value=-0.5)
    gen = torch.Generator().manual_seed(1)
    state = device.initial_state(2, dtype=torch.float64)
    stacks = [[[[-0.5] * 2 for _ in range(4)] for _ in range(2)] for _ in range(2)]  # [B][P][C][W]
    for _ in range(7):
        interface = _random_interface(device, 2, gen)
        read, state = device(interface, state)
        for b in range(2):
            for p in range(2):
                stacks[b][p] = _loop_step(stacks[b][p], interface.actions[b, p].tolist(),
                                          interface.v[b, p].tolist(), -0.5)
            expected = [x for p in range(2) for element in stacks[b][p][:3] for x in element]  # (P, k, W)
            torch.testing.assert_close(read[b], torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
            torch.testing.assert_close(state.contents[b], torch.tensor(stacks[b], dtype=torch.float64),
                                       rtol=0, atol=1e-12)


def test_check_device_passes():
    check_device(StackRNNStacks(stacks=2, depth=3, width=2, top_k=2))


# --- hard semantics -------------------------------------------------------------------------

_VALUE = st.integers(0, 8).map(lambda x: x / 8)  # exact binary fractions in [0, 1]
_STACK_STEP = st.tuples(st.sampled_from([PUSH, POP, NOOP]), st.lists(_VALUE, min_size=2, max_size=2),
                        st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))


@settings(max_examples=60, deadline=None)
@given(episode=st.lists(st.lists(_STACK_STEP, min_size=2, max_size=2), min_size=1, max_size=10))
def test_hardened_actions_make_python_lists(episode):
    # depth 3 and up to 10 steps: pushes overflow (the bottom element is dropped) and pops underflow
    device = StackRNNStacks(stacks=2, depth=3, width=2, top_k=2)
    state = device.initial_state(1)
    lists = [[], []]  # top first
    for steps in episode:
        logits = torch.tensor([noise for _, _, noise in steps])  # (P, 3) in [0, 1]
        logits[range(2), [action for action, _, _ in steps]] += 2.0  # the chosen action wins the argmax
        soft = device.Interface(torch.softmax(logits, -1)[None], torch.tensor([[v for _, v, _ in steps]]))
        read, state = device(device.harden(soft), state)
        for stack, (action, v, _) in zip(lists, steps):
            if action == PUSH:
                stack.insert(0, v)
                del stack[3:]
            elif action == POP and stack:
                stack.pop(0)
        padded = [stack + [[EMPTY_VALUE] * 2] * (3 - len(stack)) for stack in lists]
        assert state.contents[0].tolist() == padded
        assert read[0].tolist() == [x for stack in padded for element in stack[:2] for x in element]


def test_harden_makes_actions_one_hot_at_the_argmax_and_keeps_values():
    device = StackRNNStacks(stacks=2, depth=2)
    soft = device.Interface(torch.tensor([[[0.2, 0.5, 0.3], [0.1, 0.2, 0.7]]]), torch.tensor([[[0.4], [0.9]]]))
    hard = device.harden(soft)
    assert hard.actions.tolist() == [[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]
    assert hard.v is soft.v


def test_pop_on_empty_stack_reads_the_empty_value():
    device = StackRNNStacks(stacks=1, depth=3, top_k=2)
    pop = device.Interface(torch.tensor([[[0.0, 1.0, 0.0]]]), torch.tensor([[[0.7]]]))
    read, state = device(pop, device.initial_state(1))
    assert read.tolist() == [[EMPTY_VALUE, EMPTY_VALUE]]
    assert (state.contents == EMPTY_VALUE).all()


def test_push_onto_a_full_stack_drops_the_bottom_element():
    device = StackRNNStacks(stacks=1, depth=2, top_k=2)
    state = device.initial_state(1)
    for v in (0.25, 0.5, 0.75):
        read, state = device(device.Interface(torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[v]]])), state)
    assert state.contents[0, 0, :, 0].tolist() == [0.75, 0.5]
    assert read.tolist() == [[0.75, 0.5]]


# --- invariants -----------------------------------------------------------------------------

_PROBABILITIES = st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(lambda p: sum(p) > 1e-3)


@pytest.mark.parametrize("empty_value", [EMPTY_VALUE, 0.5])
@settings(max_examples=40, deadline=None)
@given(episode=st.lists(st.tuples(_PROBABILITIES, st.floats(0.0, 1.0)), min_size=1, max_size=10))
def test_contents_stay_in_the_convex_hull_of_pushed_values_and_the_empty_value(empty_value, episode):
    # every element is a convex combination of v ∈ [0, 1], older elements and the empty value
    device = StackRNNStacks(stacks=1, depth=3, empty_value=empty_value)
    low, high = min(0.0, empty_value), max(1.0, empty_value)
    state = device.initial_state(1, dtype=torch.float64)
    for probabilities, v in episode:
        actions = torch.tensor(probabilities, dtype=torch.float64)
        actions = (actions / actions.sum()).reshape(1, 1, 3)
        _, state = device(device.Interface(actions, torch.tensor([[[v]]], dtype=torch.float64)), state)
        assert (state.contents >= low - 1e-12).all() and (state.contents <= high + 1e-12).all()


# --- extremes and errors --------------------------------------------------------------------

@pytest.mark.parametrize("logit_scale", [1e4, 0.0])
def test_saturated_or_uniform_actions_over_many_steps_give_finite_reads_and_gradients(logit_scale):
    device = StackRNNStacks(stacks=2, depth=3, width=2)
    gen = torch.Generator().manual_seed(2)
    state = device.initial_state(2)
    raws = []
    for _ in range(12):  # 4× the depth: overflow and underflow
        raw = (torch.randn(2, device.interface_size, generator=gen) * logit_scale).requires_grad_(True)
        raws.append(raw)
        read, state = device(device.interface_from_raw(raw), state)
        assert torch.isfinite(read).all()
    read.sum().backward()
    assert all(torch.isfinite(raw.grad).all() for raw in raws)


def test_huge_pushed_values_stay_finite_with_finite_gradients():
    device = StackRNNStacks(stacks=1, depth=3)
    state = device.initial_state(1)
    leaves = []
    for _ in range(5):
        actions = torch.tensor([[[0.6, 0.2, 0.2]]], requires_grad=True)
        v = torch.full((1, 1, 1), 1e30, requires_grad=True)
        leaves += [actions, v]
        read, state = device(device.Interface(actions, v), state)
        assert torch.isfinite(read).all()
    read.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in leaves)


@pytest.mark.parametrize("field,kwargs", [("stacks", {"stacks": 0, "depth": 3}),
                                          ("depth", {"stacks": 1, "depth": 0}),
                                          ("width", {"stacks": 1, "depth": 3, "width": 0}),
                                          ("top_k", {"stacks": 1, "depth": 3, "top_k": 4})])
def test_bad_sizes_raise_naming_the_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        StackRNNStacks(**kwargs)


# --- on the machine: push and pop of each stack as device ops -----------------------------------


def test_machine_ops_name_each_stack_when_there_are_several():
    one = Machine(OpSet(["testing::vec_scale"]), {"x": Vector[5], "k": Scalar}, Vector[5],
                  devices={"s": StackRNNStacks(stacks=1, depth=3, width=5)})
    two = Machine(OpSet(["testing::vec_scale"]), {"x": Vector[5], "k": Scalar}, Vector[5],
                  devices={"s": StackRNNStacks(stacks=2, depth=3, width=5)})
    assert one.opset.names[1:] == ("s::push", "s::pop")
    assert two.opset.names[1:] == ("s::push0", "s::pop0", "s::push1", "s::pop1")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_hot_machine_programs_equal_the_hard_interpreter_over_lists(data):
    stacks, depth = data.draw(st.integers(1, 2), label="P"), data.draw(st.integers(1, 3), label="C")
    machine = Machine(OpSet(["testing::vec_scale"]), {"x": Vector[5], "y": Vector[5], "k": Scalar}, Vector[5],
                      devices={"s": StackRNNStacks(stacks=stacks, depth=depth, width=5, top_k=1)})
    vector = st.tuples(*[st.integers(-9, 9).map(float)] * 5)
    plain_inputs = {"x": data.draw(vector, label="x"), "y": data.draw(vector, label="y"),
                    "k": data.draw(st.integers(-3, 3).map(float), label="k")}
    trace, program = draw_one_hot_program(data, machine, data.draw(st.integers(1, 8), label="steps"))
    assert_soft_equals_hard(machine, trace, program, plain_inputs)


def test_a_push_onto_a_full_stack_drops_the_bottom_in_both_machine_semantics():
    device = StackRNNStacks(stacks=1, depth=2, width=1, top_k=1)
    # push 1, 2, 3 onto a stack of depth 2, then pop three times: 3, 2, then the empty value
    state, plain = device.initial_state(1, dtype=torch.float64), device.plain_initial()
    one_hot = lambda k: torch.nn.functional.one_hot(torch.tensor([k]), 2).double()  # noqa: E731
    pops_soft, pops_hard = [], []
    for value in (1.0, 2.0, 3.0):
        _, state = device.machine_step(one_hot(0), [(torch.tensor([[value]], dtype=torch.float64),), ()], state)
        _, plain = device.plain_apply("push", plain, (value,))
    for _ in range(3):
        (_, top), state = device.machine_step(one_hot(1), [(torch.zeros(1, 1, dtype=torch.float64),), ()], state)
        result, plain = device.plain_apply("pop", plain)
        pops_soft.append(top.item())
        pops_hard.append(result[0])
    assert pops_soft == pops_hard == [3.0, 2.0, EMPTY_VALUE]
