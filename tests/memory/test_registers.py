import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from machine_equivalence import assert_soft_equals_hard, draw_one_hot_program

from diffvm.interp import Instruction, Machine, OpSet, Pointer, check_op, get_op
from diffvm.interp.device import check_device
from diffvm.memory.registers import UPDATE_CHOICES, PointerRegisters, nram_constants, nram_ops
from diffvm.programs import run_trace

NAMES = ("zero", "inc", "dec", "add", "sub", "lt", "le", "eq", "min", "max")
SIZES = (5, 8)

# Each module as an integer function: the distribution of f(X, Y) for independent X ~ a, Y ~ b
# is what the soft op must compute (the paper's modules on integers mod M).
INTEGER_MEANING = {
    "zero": lambda m, i: 0,
    "inc": lambda m, i: (i + 1) % m,
    "dec": lambda m, i: (i - 1) % m,
    "add": lambda m, i, j: (i + j) % m,
    "sub": lambda m, i, j: (i - j) % m,
    "lt": lambda m, i, j: int(i < j),
    "le": lambda m, i, j: int(i <= j),
    "eq": lambda m, i, j: int(i == j),
    "min": lambda m, i, j: min(i, j),
    "max": lambda m, i, j: max(i, j),
}


def random_distributions(gen, batch, m):
    return torch.softmax(torch.randn(batch, m, generator=gen, dtype=torch.float64) * 2, -1)


def ops_by_name(m):
    return {op.name.split("::")[1]: op for op in nram_ops(m)}


# --------------------------------------------------------------------------------------------
# The ops


def test_nram_ops_registers_the_named_ops_once():
    first = nram_ops(5)
    assert [op.name for op in first] == [f"nram5::{n}" for n in NAMES]
    assert nram_ops(5) is first
    assert all(get_op(op.name) is op for op in first)
    assert all(op.output == Pointer[5] and set(op.inputs) == {Pointer[5]} for op in first)
    assert [op.arity for op in first] == [1, 1, 1, 2, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("bad", [1, 0, 2.0, True])
def test_nram_ops_refuses_a_modulus_below_two(bad):
    with pytest.raises(ValueError, match="modulus must be an int ≥ 2"):
        nram_ops(bad)


@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_every_nram_op_passes_check_op(m, name):
    check_op(ops_by_name(m)[name])


@pytest.mark.parametrize("m", [2, 5, 8])
@pytest.mark.parametrize("name", NAMES)
def test_op_is_the_distribution_of_its_integer_function(m, name):
    gen = torch.Generator().manual_seed(m)
    op, f = ops_by_name(m)[name], INTEGER_MEANING[name]
    args = [random_distributions(gen, 3, m) for _ in op.inputs]
    out = op(*args)
    for b in range(3):
        expected = [0.0] * m
        if op.arity == 1:
            for i in range(m):
                expected[f(m, i)] += float(args[0][b, i])
        else:
            for i in range(m):
                for j in range(m):
                    expected[f(m, i, j)] += float(args[0][b, i]) * float(args[1][b, j])
        assert out[b].tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_hard_meaning_on_plain_integers_is_the_modules_integer_function(name):
    op, f = ops_by_name(8)[name], INTEGER_MEANING[name]
    for args in [(0, 0), (7, 1), (1, 7), (3, 3), (5, 2)]:
        assert op.hard(*args[: op.arity]) == f(8, *args[: op.arity])


def test_comparisons_put_their_probability_on_one_and_the_rest_on_zero():
    lt = ops_by_name(5)["lt"]
    a = torch.tensor([[0.5, 0.5, 0, 0, 0]], dtype=torch.float64)  # 0 or 1
    b = torch.tensor([[0, 1.0, 0, 0, 0]], dtype=torch.float64)  # 1
    assert lt(a, b)[0].tolist() == [0.5, 0.5, 0, 0, 0]


def test_constants_feed_a_machine_that_adds_one_and_two():
    m = 5
    opset = OpSet(nram_ops(m))
    machine = Machine(opset, {}, Pointer[m], constants=nram_constants(m))
    names = [str(s) for s in machine.sources(Pointer[m], 1)]
    assert names == ["zero", "one", "two", "s0"]
    choose = lambda k, n: torch.nn.functional.one_hot(torch.tensor([k]), n).double()
    step = Instruction(choose(opset.index(f"nram{m}::add"), len(opset)), (choose(1, 4), choose(2, 4)))
    out, _ = machine.run([step], {})
    assert out.argmax(-1).item() == 3 and out.max().item() == 1


def test_constants_wrap_around_the_modulus():
    assert nram_constants(2) == {"zero": (Pointer[2], 0), "one": (Pointer[2], 1), "two": (Pointer[2], 0)}


# --------------------------------------------------------------------------------------------
# The device


def test_device_shapes():
    dev = PointerRegisters(modulus=5, registers=3)
    assert dev.interface_size == 3 + 3 + 3 + 1 + 3 * len(UPDATE_CHOICES)
    assert dev.read_size == 5 * 4
    state = dev.initial_state(2, dtype=torch.float64)
    assert state.memory.shape == (2, 5, 5) and state.registers.shape == (2, 3, 5)
    raw = torch.randn(2, dev.interface_size, dtype=torch.float64)
    interface = dev.interface_from_raw(raw)
    assert interface.write_gate.shape == (2,) and interface.update.shape == (2, 3, 5)
    read, new = dev(interface, state)
    assert read.shape == (2, 20) and new.memory.shape == (2, 5, 5) and new.registers.shape == (2, 3, 5)
    assert read.dtype == torch.float64


@pytest.mark.parametrize("field, kwargs", [("modulus", dict(modulus=1, registers=2)),
                                           ("registers", dict(modulus=4, registers=0))])
def test_bad_config_names_the_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        PointerRegisters(**kwargs)


def test_initial_state_encodes_the_given_memory_and_zero_registers():
    dev = PointerRegisters(4, 2)
    state = dev.initial_state(2, memory=torch.tensor([[3, 0, 1, 2], [1, 1, 1, 1]]))
    assert state.memory.argmax(-1).tolist() == [[3, 0, 1, 2], [1, 1, 1, 1]]
    assert (state.memory.sum(-1) == 1).all() and (state.registers.argmax(-1) == 0).all()
    assert (state.registers.sum(-1) == 1).all()
    assert (dev.initial_state(1).memory.argmax(-1) == 0).all()


@pytest.mark.parametrize("memory, message", [(torch.tensor([[0, 1, 2]]), "shape"),
                                             (torch.tensor([[0.0, 1, 2, 3]]), "integer tensor"),
                                             (torch.tensor([[0, 1, 2, 4]]), r"lie in \[0, 4\)")])
def test_initial_state_refuses_a_bad_memory(memory, message):
    with pytest.raises(ValueError, match=message):
        PointerRegisters(4, 2).initial_state(1, memory=memory)


def loop_step(interface, memory, registers, b):
    """One soft step for example b written with Python loops from the module docstring's equations.
    memory: list of M lists of M floats; registers: list of G lists of M floats."""
    m, g = len(memory), len(registers)
    f = lambda x: float(x)

    def select(weights):
        return [sum(f(weights[b, k]) * registers[k][i] for k in range(g)) for i in range(m)]

    p = select(interface.read_pointer)
    read = [sum(p[i] * memory[i][v] for i in range(m)) for v in range(m)]
    address, value, gate = select(interface.write_pointer), select(interface.write_value), f(interface.write_gate[b])
    memory = [[(1 - gate * address[i]) * memory[i][v] + gate * address[i] * value[v] for v in range(m)]
              for i in range(m)]
    new = []
    for k, r in enumerate(registers):
        candidates = [r, read, [r[(v - 1) % m] for v in range(m)], [r[(v + 1) % m] for v in range(m)],
                      [1.0 if v == 0 else 0.0 for v in range(m)]]
        u = [f(interface.update[b, k, c]) for c in range(len(UPDATE_CHOICES))]
        new.append([sum(u[c] * candidates[c][v] for c in range(len(candidates))) for v in range(m)])
    return read, memory, new


def test_soft_steps_match_a_plain_loop():
    dev = PointerRegisters(4, 3)
    gen = torch.Generator().manual_seed(1)
    batch = 2
    state = dev.initial_state(batch, dtype=torch.float64, memory=torch.randint(0, 4, (batch, 4), generator=gen))
    memories = [state.memory[b].tolist() for b in range(batch)]
    registers = [state.registers[b].tolist() for b in range(batch)]
    for _ in range(4):
        interface = dev.interface_from_raw(torch.randn(batch, dev.interface_size, generator=gen, dtype=torch.float64))
        read, state = dev(interface, state)
        for b in range(batch):
            r, memories[b], registers[b] = loop_step(interface, memories[b], registers[b], b)
            assert read[b].tolist() == pytest.approx(r + sum(registers[b], []), abs=1e-12)
            assert state.memory[b].flatten().tolist() == pytest.approx(sum(memories[b], []), abs=1e-12)


def test_check_device_passes_on_a_small_config():
    check_device(PointerRegisters(modulus=5, registers=3))


def test_harden_makes_every_choice_one_hot_at_its_argmax_and_the_gate_zero_or_one():
    dev = PointerRegisters(5, 3)
    soft = dev.interface_from_raw(torch.randn(4, dev.interface_size, generator=torch.Generator().manual_seed(3)))
    hard = dev.harden(soft)
    for name in ("read_pointer", "write_pointer", "write_value", "update"):
        s, h = getattr(soft, name), getattr(hard, name)
        assert (h.sum(-1) == 1).all() and ((h == 0) | (h == 1)).all()
        assert (h.argmax(-1) == s.argmax(-1)).all()
    assert hard.write_gate.tolist() == (soft.write_gate > 0.5).float().tolist()


# --- hard equivalence with integer registers and a list memory ------------------------------


def plain_run(memory, steps, m, g):
    """Integer registers and a list of ints mod M, one step as in the module docstring."""
    registers, memory, trace = [0] * g, list(memory), []
    for read_reg, write_reg, value_reg, gate, updates in steps:
        read = memory[registers[read_reg]]
        if gate:
            memory[registers[write_reg]] = registers[value_reg]
        new = {"keep": registers, "read": [read] * g, "inc": [(x + 1) % m for x in registers],
               "dec": [(x - 1) % m for x in registers], "zero": [0] * g}
        registers = [new[choice][k] for k, choice in enumerate(updates)]
        trace.append((read, list(registers)))
    return trace, memory


@st.composite
def episodes(draw):
    m, g = draw(st.integers(2, 6)), draw(st.integers(1, 3))
    reg = st.integers(0, g - 1)
    step = st.tuples(reg, reg, reg, st.booleans(), st.lists(st.sampled_from(UPDATE_CHOICES), min_size=g, max_size=g))
    examples = draw(st.lists(st.tuples(st.lists(st.integers(0, m - 1), min_size=m, max_size=m),
                                       st.lists(step, min_size=6, max_size=6)), min_size=1, max_size=3))
    return m, g, examples


@settings(max_examples=40, deadline=None)
@given(episodes())
def test_hard_controls_run_integer_registers_over_a_list_memory(episode):
    m, g, examples = episode
    dev = PointerRegisters(m, g)
    one_hot = lambda xs, n: torch.nn.functional.one_hot(torch.tensor(xs), n).double()
    state = dev.initial_state(len(examples), dtype=torch.float64, memory=torch.tensor([mem for mem, _ in examples]))
    expected = [plain_run(mem, steps, m, g) for mem, steps in examples]
    for t in range(6):
        steps = [steps[t] for _, steps in examples]
        interface = dev.Interface(
            one_hot([s[0] for s in steps], g),
            one_hot([s[1] for s in steps], g),
            one_hot([s[2] for s in steps], g),
            torch.tensor([float(s[3]) for s in steps], dtype=torch.float64),
            one_hot([[UPDATE_CHOICES.index(c) for c in s[4]] for s in steps], len(UPDATE_CHOICES)),
        )
        assert all(torch.equal(h, x) for h, x in zip(dev.harden(interface), interface))
        read, state = dev(interface, state)
        assert ((read == 0) | (read == 1)).all()  # hard controls keep every value exactly one-hot
        for b, (trace, _) in enumerate(expected):
            value, registers = trace[t]
            assert read[b, :m].argmax().item() == value
            assert read[b, m:].reshape(g, m).argmax(-1).tolist() == registers
    assert state.memory.argmax(-1).tolist() == [mem for _, mem in expected]
    assert ((state.memory == 0) | (state.memory == 1)).all()


# --- invariants and extremes -------------------------------------------------------------------


def run_episode(dev, raw, memory=None):
    state = dev.initial_state(raw.shape[1], dtype=raw.dtype, memory=memory)
    states = []
    for t in range(raw.shape[0]):
        _, state = dev(dev.interface_from_raw(raw[t]), state)
        states.append(state)
    return states


def assert_on_simplex(x, atol):
    assert (x >= 0).all()
    assert torch.allclose(x.sum(-1), torch.ones((), dtype=x.dtype), atol=atol)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 7), st.integers(1, 4), st.sampled_from([0.1, 1.0, 10.0]))
def test_registers_and_memory_cells_stay_distributions(seed, m, g, scale):
    gen = torch.Generator().manual_seed(seed)
    dev = PointerRegisters(m, g)
    raw = torch.randn(8, 2, dev.interface_size, generator=gen) * scale  # float32: round-off included
    memory = torch.randint(0, m, (2, m), generator=gen)
    for state in run_episode(dev, raw, memory):
        assert_on_simplex(state.registers, 1e-5)
        assert_on_simplex(state.memory, 1e-5)


@pytest.mark.parametrize("scale", [1e4, 1e30, -1e30])
def test_saturated_raw_interface_gives_finite_reads_and_gradients(scale):
    dev = PointerRegisters(6, 3).double()
    raw = (torch.randn(10, 2, dev.interface_size, generator=torch.Generator().manual_seed(4),
                       dtype=torch.float64) * scale).requires_grad_(True)
    states = run_episode(dev, raw, torch.randint(0, 6, (2, 6), generator=torch.Generator().manual_seed(5)))
    loss = sum(s.registers.sum() + s.memory.square().sum() for s in states)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()
    assert_on_simplex(states[-1].registers, 1e-9)
    assert_on_simplex(states[-1].memory, 1e-9)


# --- on the machine: READ and WRITE as device ops beside the NRAM modules --------------------


def test_machine_ops_are_read_and_write_through_pointers():
    m = Machine(OpSet(nram_ops(5)), {"p": Pointer[5]}, Pointer[5], devices={"mem": PointerRegisters(5, 1)})
    assert m.opset.names[-2:] == ("mem::read", "mem::write")
    assert [str(t) for t in m.opset.ops[-1].inputs] == ["Pointer[5]", "Pointer[5]"]


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_one_hot_machine_programs_over_the_memory_equal_the_hard_interpreter(data):
    modulus = data.draw(st.integers(2, 6), label="M")
    ops = data.draw(st.lists(st.sampled_from(nram_ops(modulus)), min_size=1, max_size=4,
                             unique_by=lambda o: o.name), label="modules")
    machine = Machine(OpSet(ops), {"x": Pointer[modulus], "y": Pointer[modulus]}, Pointer[modulus],
                      constants=nram_constants(modulus), devices={"mem": PointerRegisters(modulus, 1)})
    plain_inputs = {n: data.draw(st.integers(0, modulus - 1), label=n) for n in "xy"}
    memory = data.draw(st.lists(st.integers(0, modulus - 1), min_size=modulus, max_size=modulus), label="memory")
    trace, program = draw_one_hot_program(data, machine, data.draw(st.integers(1, 6), label="steps"))
    soft_memory = machine.devices["mem"].initial_state(1, dtype=torch.float64, memory=torch.tensor([memory]))
    state = assert_soft_equals_hard(machine, trace, program, plain_inputs,
                                    device_states={"mem": soft_memory}, plain_device_states={"mem": memory})
    # the memory itself ends the same: replay the program's writes on the plain list
    history = run_trace(program, plain_inputs, devices=machine.devices, device_states={"mem": memory})
    value_of = {"input": lambda k: plain_inputs[k], "const": lambda k: program.constants[k][1],
                "step": lambda k: history[k][Pointer[modulus]]}
    plain = list(memory)
    for step in program.steps:
        if step.op == "mem::write":
            address, value = (value_of[a.kind](a.key) for a in step.args)
            plain[address] = value
    assert state.devices["mem"].memory[0].argmax(-1).tolist() == plain
