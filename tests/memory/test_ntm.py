import math

import pytest
import sized_ops  # noqa: F401  (registers testing::ptr_inc and testing::vec_scale)
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from machine_equivalence import assert_soft_equals_hard, draw_one_hot_program

from diffvm.interp import Machine, OpSet, Pointer, Scalar, Vector
from diffvm.interp.device import check_device
from diffvm.memory.addressing import NORM_EPS
from diffvm.memory.ntm import CONSTANT_INIT, RANDOM_INIT_STD, NTMInterface, NTMMemory

F64 = torch.float64


def _raw_interface(ntm, batch, gen, scale=1.0):
    raw = scale * torch.randn(batch, ntm.interface_size, generator=gen, dtype=F64)
    return ntm.interface_from_raw(raw)


# --- configuration and shapes ------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, argument", [
    ({"slots": 0}, "slots"), ({"width": 0}, "width"), ({"read_heads": 0}, "read_heads"),
    ({"write_heads": 0}, "write_heads"), ({"shift_range": -1}, "shift_range"), ({"slots": 2.5}, "slots"),
    ({"init": "zeros"}, "init"),
], ids=lambda x: str(x))
def test_bad_config_raises_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        NTMMemory(**{"slots": 4, "width": 3, **kwargs})


def test_interface_fields_are_write_heads_then_read_heads_with_paper_shapes():
    ntm = NTMMemory(6, 4, read_heads=3, write_heads=2, shift_range=2)
    fields = ntm.interface_fields()
    assert list(fields) == list(NTMInterface._fields)
    shapes = {name: (f.shape, f.activation) for name, f in fields.items()}
    assert shapes == {
        "write_k": ((2, 4), "identity"), "write_beta": ((2,), "oneplus"), "write_g": ((2,), "sigmoid"),
        "write_s": ((2, 5), "softmax"), "write_gamma": ((2,), "oneplus"),
        "e": ((2, 4), "sigmoid"), "a": ((2, 4), "identity"),
        "read_k": ((3, 4), "identity"), "read_beta": ((3,), "oneplus"), "read_g": ((3,), "sigmoid"),
        "read_s": ((3, 5), "softmax"), "read_gamma": ((3,), "oneplus"),
    }
    assert ntm.interface_size == 2 * (4 + 1 + 1 + 5 + 1 + 4 + 4) + 3 * (4 + 1 + 1 + 5 + 1)
    assert ntm.read_size == 12


def test_step_shapes_and_initial_state():
    ntm = NTMMemory(6, 4, read_heads=3, write_heads=2)
    state = ntm.initial_state(5)
    assert state.memory.shape == (5, 6, 4) and torch.all(state.memory == CONSTANT_INIT)
    slot0 = torch.eye(6)[0]
    assert torch.equal(state.read_weights, slot0.expand(5, 3, 6))
    assert torch.equal(state.write_weights, slot0.expand(5, 2, 6))
    read, state = ntm(ntm.interface_from_raw(torch.randn(5, ntm.interface_size)), state)
    assert read.shape == (5, 12)
    assert [x.shape for x in state] == [(5, 6, 4), (5, 3, 6), (5, 2, 6)]


@pytest.mark.parametrize("kwargs", [
    {}, {"read_heads": 2, "write_heads": 2, "init": "learned"}, {"shift_range": 0},
    {"slots": 3, "shift_range": 2},  # more offsets than slots
], ids=lambda x: str(x))
def test_check_device(kwargs):
    check_device(NTMMemory(**{"slots": 5, "width": 3, **kwargs}))


# --- initial memory ----------------------------------------------------------------------------
def test_learned_initial_memory_starts_constant_and_receives_gradient():
    ntm = NTMMemory(4, 3, init="learned")
    assert torch.all(ntm.memory_init == CONSTANT_INIT)
    state = ntm.initial_state(2)
    read, _ = ntm(ntm.interface_from_raw(torch.randn(2, ntm.interface_size)), state)
    read.sum().backward()
    assert torch.isfinite(ntm.memory_init.grad).all() and ntm.memory_init.grad.abs().sum() > 0


def test_random_initial_memory_is_seeded_by_its_generator():
    ntm = NTMMemory(64, 32, init="random")
    draw = lambda seed: ntm.initial_state(8, generator=torch.Generator().manual_seed(seed)).memory
    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert draw(0).std().item() == pytest.approx(RANDOM_INIT_STD, rel=0.05)
    assert draw(0).dtype == torch.float32 and ntm.initial_state(2, dtype=F64).memory.dtype == F64


# --- values against a plain loop over slots ----------------------------------------------------
def _plain_address(memory, k, beta, g, s, gamma, previous):
    """Eqs. 5–9 for one head of one example, over Python floats."""
    n, r = len(memory), (len(s) - 1) // 2
    norm = lambda u: math.sqrt(sum(x * x for x in u) + NORM_EPS)
    cos = [sum(x * y for x, y in zip(k, row)) / (norm(k) * norm(row)) for row in memory]
    z = sum(math.exp(beta * c) for c in cos)
    content = [math.exp(beta * c) / z for c in cos]
    gated = [g * c + (1 - g) * p for c, p in zip(content, previous)]
    shifted = [sum(gated[j] * s[d + r] for j in range(n) for d in range(-r, r + 1) if (j + d) % n == i)
               for i in range(n)]
    z = sum(x ** gamma for x in shifted)
    return [x ** gamma / z for x in shifted]


def _plain_step(i, memory, read_weights, write_weights):
    """One NTM step for one example: i maps field -> nested lists, without the batch."""
    hw, width = len(i["e"]), len(memory[0])
    ww = [_plain_address(memory, i["write_k"][h], i["write_beta"][h], i["write_g"][h], i["write_s"][h],
                         i["write_gamma"][h], write_weights[h]) for h in range(hw)]
    new = []
    for slot, row in enumerate(memory):
        out = []
        for c in range(width):
            x = row[c]
            for h in range(hw):
                x *= 1 - ww[h][slot] * i["e"][h][c]
            out.append(x + sum(ww[h][slot] * i["a"][h][c] for h in range(hw)))
        new.append(out)
    rw = [_plain_address(new, i["read_k"][h], i["read_beta"][h], i["read_g"][h], i["read_s"][h],
                         i["read_gamma"][h], read_weights[h]) for h in range(len(read_weights))]
    reads = [sum(w[slot] * new[slot][c] for slot in range(len(new))) for w in rw for c in range(width)]
    return reads, new, rw, ww


@pytest.mark.parametrize("slots, shift_range", [(5, 1), (4, 2), (1, 1)])
def test_steps_match_a_plain_loop_over_slots(slots, shift_range):
    ntm = NTMMemory(slots, 3, read_heads=2, write_heads=2, shift_range=shift_range, init="random")
    gen = torch.Generator().manual_seed(0)
    state = ntm.initial_state(3, dtype=F64, generator=gen)
    plain = [(state.memory[b].tolist(), state.read_weights[b].tolist(), state.write_weights[b].tolist())
             for b in range(3)]
    for _ in range(3):
        interface = _raw_interface(ntm, 3, gen, scale=2.0)
        read, state = ntm(interface, state)
        for b in range(3):
            fields = {name: x[b].tolist() for name, x in interface._asdict().items()}
            reads, memory, rw, ww = _plain_step(fields, *plain[b])
            plain[b] = memory, rw, ww
            assert read[b].tolist() == pytest.approx(reads, rel=1e-9, abs=1e-12)
            assert state.memory[b].flatten().tolist() == pytest.approx(sum(memory, []), rel=1e-9, abs=1e-12)
            assert state.read_weights[b].flatten().tolist() == pytest.approx(sum(rw, []), rel=1e-9, abs=1e-12)
            assert state.write_weights[b].flatten().tolist() == pytest.approx(sum(ww, []), rel=1e-9, abs=1e-12)


# --- hard semantics ----------------------------------------------------------------------------
def test_harden_rounds_the_location_controls_and_keeps_the_rest():
    ntm = NTMMemory(5, 3, read_heads=2, write_heads=2)
    soft = _raw_interface(ntm, 4, torch.Generator().manual_seed(1), scale=3.0)
    hard = ntm.harden(soft)
    for name in ("write_g", "read_g", "e"):
        assert torch.equal(getattr(hard, name), (getattr(soft, name) > 0.5).to(F64))
    for name in ("write_s", "read_s"):
        s = getattr(hard, name)
        assert torch.equal(s.argmax(-1), getattr(soft, name).argmax(-1)) and torch.all(s.sum(-1) == 1)
        assert set(s.unique().tolist()) <= {0.0, 1.0}
    for name in ("write_k", "write_beta", "write_gamma", "a", "read_k", "read_beta", "read_gamma"):
        assert torch.equal(getattr(hard, name), getattr(soft, name))


class ListMemory:
    """The discrete data structure a location-driven NTM is: an array of rows and an integer
    position per head, moved by the chosen offset mod N."""

    def __init__(self, slots, width, read_heads, write_heads):
        self.rows = [[CONSTANT_INIT] * width for _ in range(slots)]
        self.read_at, self.write_at = [0] * read_heads, [0] * write_heads

    def step(self, write_moves, erases, adds, read_moves):
        n = len(self.rows)
        self.write_at = [(p + d) % n for p, d in zip(self.write_at, write_moves)]
        for p, e in zip(self.write_at, erases):  # every erase, then every add
            self.rows[p] = [x * (1 - bit) for x, bit in zip(self.rows[p], e)]
        for p, a in zip(self.write_at, adds):
            self.rows[p] = [x + y for x, y in zip(self.rows[p], a)]
        self.read_at = [(p + d) % n for p, d in zip(self.read_at, read_moves)]
        return [x for p in self.read_at for x in self.rows[p]]


@st.composite
def _location_episodes(draw):
    n, width = draw(st.integers(1, 7)), draw(st.integers(1, 3))
    heads_r, heads_w, r = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 2))
    moves = lambda h: st.lists(st.integers(-r, r), min_size=h, max_size=h)
    bits = st.lists(st.lists(st.integers(0, 1), min_size=width, max_size=width), min_size=heads_w, max_size=heads_w)
    values = st.lists(st.lists(st.integers(-9, 9), min_size=width, max_size=width), min_size=heads_w,
                      max_size=heads_w)
    step = st.tuples(moves(heads_w), bits, values, moves(heads_r))
    episodes = draw(st.lists(st.lists(step, min_size=1, max_size=8), min_size=2, max_size=2))  # batch of 2
    episodes[1] = (episodes[1] * 8)[:len(episodes[0])]  # same length, different moves
    return (n, width, heads_r, heads_w, r), episodes


def _soft_controls(gen, steps, width, r):
    """A soft interface, one example per entry of `steps`, whose `harden` is the given discrete
    controls: g < 0.5, s peaked at the move, e on the side of 0.5 of its bit; the keys, strengths
    and sharpenings are random (g = 0 ignores the content weighting; γ leaves a one-hot as is)."""
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=F64)

    def head(moves):  # k, β, g, s, γ of len(moves) heads
        h = len(moves)
        peaks = torch.nn.functional.one_hot(torch.tensor(moves) + r, 2 * r + 1)  # (h, S)
        s = torch.softmax(3 * peaks + 0.1 * rand(h, 2 * r + 1), -1)
        return [torch.randn(h, width, generator=gen, dtype=F64), 1 + 5 * rand(h), 0.45 * rand(h), s, 1 + 5 * rand(h)]

    examples = []
    for write_moves, erases, adds, read_moves in steps:
        e = 0.1 + 0.3 * rand(len(erases), width) + 0.5 * torch.tensor(erases, dtype=F64)
        examples.append([*head(write_moves), e, torch.tensor(adds, dtype=F64), *head(read_moves)])
    return NTMInterface(*(torch.stack(field) for field in zip(*examples)))  # each field (B, …)


@given(_location_episodes(), st.integers(0, 2**16))
@settings(max_examples=80, deadline=None)
def test_hardened_location_addressing_equals_an_array_with_integer_heads(config, seed):
    (n, width, heads_r, heads_w, r), episodes = config
    ntm = NTMMemory(n, width, read_heads=heads_r, write_heads=heads_w, shift_range=r)
    gen = torch.Generator().manual_seed(seed)
    arrays = [ListMemory(n, width, heads_r, heads_w) for _ in episodes]
    state = ntm.initial_state(len(episodes), dtype=F64)
    for t in range(len(episodes[0])):
        steps = [episode[t] for episode in episodes]
        read, state = ntm(ntm.harden(_soft_controls(gen, steps, width, r)), state)
        for b, (array, step) in enumerate(zip(arrays, steps)):
            assert read[b].tolist() == pytest.approx(array.step(*step), abs=1e-12)
            assert state.memory[b].tolist() == [pytest.approx(row, abs=1e-12) for row in array.rows]
            assert state.write_weights[b].argmax(-1).tolist() == array.write_at
            assert state.read_weights[b].argmax(-1).tolist() == array.read_at


# --- invariants and extremes -------------------------------------------------------------------
@given(scale=st.sampled_from([0.0, 1.0, 10.0, 1e4]), seed=st.integers(0, 2**16),
       init=st.sampled_from(["constant", "random"]))
@settings(max_examples=40, deadline=None)
def test_weights_stay_on_the_simplex_and_memory_finite(scale, seed, init):
    ntm = NTMMemory(6, 3, read_heads=2, write_heads=2, shift_range=1, init=init)
    gen = torch.Generator().manual_seed(seed)
    state = ntm.initial_state(3, generator=gen)
    for _ in range(6):
        raw = scale * torch.randn(3, ntm.interface_size, generator=gen)
        read, state = ntm(ntm.interface_from_raw(raw), state)
        for w in (state.read_weights, state.write_weights):
            assert (w >= 0).all()
            torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
        assert torch.isfinite(state.memory).all() and torch.isfinite(read).all()


@pytest.mark.parametrize("case", ["beta 1e4", "zero keys", "zero memory", "gamma huge", "all at once"])
def test_extreme_controls_give_finite_reads_and_gradients(case):
    ntm = NTMMemory(5, 3, read_heads=2, write_heads=2)
    gen = torch.Generator().manual_seed(2)
    interface = _raw_interface(ntm, 2, gen)
    state = ntm.initial_state(2, dtype=F64)
    extreme = {
        "beta 1e4": {"write_beta": 1e4, "read_beta": 1e4},
        "zero keys": {"write_k": 0.0, "read_k": 0.0},
        "zero memory": {},
        "gamma huge": {"write_gamma": 1e6, "read_gamma": 1e6},
        "all at once": {"write_beta": 1e4, "read_beta": 1e4, "write_k": 0.0, "read_k": 0.0, "write_gamma": 1e6,
                        "read_gamma": 1e6, "write_g": 0.0, "read_g": 1.0, "e": 1.0, "a": 0.0},
    }[case]
    interface = interface._replace(**{name: torch.full_like(getattr(interface, name), value)
                                      for name, value in extreme.items()})
    memory = torch.zeros_like(state.memory) if case in ("zero memory", "all at once") else state.memory
    leaves = [x.clone().requires_grad_(True) for x in (*interface, memory)]
    interface, state = NTMInterface(*leaves[:-1]), state._replace(memory=leaves[-1])
    reads = []
    for _ in range(3):
        read, state = ntm(interface, state)
        reads.append(read)
    out = torch.stack(reads)
    assert torch.isfinite(out).all()
    (out * torch.randn(out.shape, generator=gen, dtype=F64)).sum().backward()
    for name, leaf in zip((*NTMInterface._fields, "memory"), leaves):
        assert torch.isfinite(leaf.grad).all(), name


# --- on the machine: an array addressed by pointers -------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_one_hot_machine_programs_equal_the_hard_interpreter_over_an_array(data):
    machine = Machine(OpSet(["testing::ptr_inc", "testing::vec_scale"]),
                      {"p": Pointer[5], "x": Vector[5], "k": Scalar}, Vector[5], devices={"mem": NTMMemory(5, 5)})
    assert machine.opset.names[2:] == ("mem::read", "mem::write")
    plain_inputs = {"p": data.draw(st.integers(0, 4), label="p"),
                    "x": data.draw(st.tuples(*[st.integers(-9, 9).map(float)] * 5), label="x"),
                    "k": data.draw(st.integers(-3, 3).map(float), label="k")}
    trace, program = draw_one_hot_program(data, machine, data.draw(st.integers(1, 8), label="steps"))
    assert_soft_equals_hard(machine, trace, program, plain_inputs)


def test_a_machine_write_then_read_at_the_same_pointer_returns_the_word():
    device = NTMMemory(4, 3)
    state = device.initial_state(1, dtype=torch.float64)
    p = torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    v = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    write, read = torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    _, state = device.machine_step(write, [(p,), (p, v)], state)
    (word, _), _ = device.machine_step(read, [(p,), (p, v)], state)
    assert word.tolist() == v.tolist()
    _, rows = device.plain_apply("write", device.plain_initial(), 2, (1.0, -2.0, 3.0))
    assert device.plain_apply("read", rows, 2)[0] == (1.0, -2.0, 3.0)
