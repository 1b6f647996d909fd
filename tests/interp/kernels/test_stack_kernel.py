"""The fused neural stack/queue step (diffvm.interp.kernels.stack): the reference against the
device's own pop, push and read and a plain loop, the Triton kernel (under TRITON_INTERPRET=1 on
CPU) and the custom op's backward against autograd of the reference, on awkward shapes, in
float32 and float64, and hard pushes and pops against a Python list."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import outputs_and_gradients

from diffvm.interp.kernels import _dispatch, strength_step, strength_step_reference
from diffvm.memory.neural_stack import End, pop, read

IMPLS = ["reference", "triton"]
# (B, C, W, row, end): one row, primes, the last row, C past one block of the value tile
SHAPES = [(1, 1, 1, 0, "top"), (2, 5, 3, 3, "top"), (3, 7, 20, 4, "bottom"), (2, 13, 5, 12, "bottom"),
          (2, 300, 20, 150, "top")]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(batch, capacity, width, row, *, seed, dtype=torch.float64):
    """Soft strengths in the rows below `row` (the ones written so far), values, u and d."""
    gen = torch.Generator().manual_seed(seed)
    strengths = torch.rand(batch, capacity, generator=gen, dtype=dtype)
    strengths[:, row:] = 0
    return (strengths, torch.randn(batch, capacity, width, generator=gen, dtype=dtype),
            torch.rand(batch, generator=gen, dtype=dtype), torch.rand(batch, generator=gen, dtype=dtype))




def _devices_step(row, end):
    """The step as diffvm.memory.neural_stack takes it: pop, push the strength, read."""
    def step(strengths, values, u, d):
        popped = pop(strengths, u, End(end))
        new = popped.index_copy(1, torch.tensor([row]), d.unsqueeze(1))
        return new, read(values, new, End(end))
    return step


@pytest.mark.parametrize("end", ["top", "bottom"])
@pytest.mark.parametrize("impl", ["oracle", *IMPLS])
def test_step_and_gradients_match_the_devices_functions(impl, end):
    row = 4
    inputs = _inputs(3, 7, 4, row, seed=1)
    fn = (lambda *xs: strength_step_reference(*xs, row, end)) if impl == "oracle" else \
        (lambda *xs: strength_step(*xs, row, end=End(end), impl=impl))
    want, want_grads = outputs_and_gradients(_devices_step(row, end), inputs)
    got, grads = outputs_and_gradients(fn, inputs)
    if impl != "triton":  # the same operations: the same numbers, gradients included
        assert all(torch.equal(a, b) for a, b in zip(got + grads, want + want_grads))
    for a, b in zip(got + grads, want + want_grads):
        torch.testing.assert_close(a, b, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("end", ["top", "bottom"])
@pytest.mark.parametrize("impl", IMPLS)
def test_step_matches_a_plain_loop_over_the_papers_equations(impl, end):
    batch, capacity, width, row = 2, 5, 3, 3
    strengths, values, u, d = _inputs(batch, capacity, width, row, seed=2)
    new, r = strength_step(strengths, values, u, d, row, end=end, impl=impl)

    def beyond(s, i):
        return sum(s[i + 1:]) if end == "top" else sum(s[:i])

    for b in range(batch):
        s = strengths[b].tolist()
        s = [max(0.0, s[i] - max(0.0, u[b].item() - beyond(s, i))) for i in range(capacity)]  # eq. 2 / 4
        s[row] = d[b].item()  # eq. 1
        assert new[b].tolist() == pytest.approx(s, abs=1e-12)
        weights = [min(s[i], max(0.0, 1 - beyond(s, i))) for i in range(capacity)]  # eq. 3 / 5
        want = [sum(weights[i] * values[b, i, w].item() for i in range(capacity)) for w in range(width)]
        assert r[b].tolist() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-W{}-row{}-{}".format(*s))
@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_and_every_gradient_match_autograd_of_the_reference(impl, shape, dtype):
    batch, capacity, width, row, end = shape
    inputs = _inputs(batch, capacity, width, row, seed=3, dtype=dtype)
    want, want_grads = outputs_and_gradients(lambda *xs: strength_step_reference(*xs, row, end), inputs)
    got, grads = outputs_and_gradients(lambda *xs: strength_step(*xs, row, end=end, impl=impl), inputs)
    for name, a, b in zip(["s_t", "r", "ds", "dV", "du", "dd"], got + grads, want + want_grads):
        assert a.dtype == dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("end", ["top", "bottom"])
@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl, end):
    # every row but the pushed one written: an unwritten row of a queue sits on the kink
    # max(0, 0 − 0) of the pop, where finite differences see half a slope (module docstring)
    inputs = tuple(x.requires_grad_() for x in _inputs(1, 4, 2, 3, seed=4))
    assert torch.autograd.gradcheck(lambda *xs: strength_step(*xs, 3, end=end, impl=impl), inputs)


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import stack

    strengths, values, u, d = (x.requires_grad_() for x in _inputs(2, 5, 3, 3, seed=5))
    torch.library.opcheck(stack._strength_step, (strengths, values, u, d, 3, True, triton))
    gen = torch.Generator().manual_seed(6)
    grads = (torch.randn(2, 5, generator=gen, dtype=torch.float64), torch.randn(2, 3, generator=gen,
                                                                                dtype=torch.float64))
    detached = [x.detach() for x in (strengths, values, u, d)]
    torch.library.opcheck(stack._strength_step_backward, (*grads, *detached, 3, False, triton))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=6), st.sampled_from(["top", "bottom"]),
       st.sampled_from(IMPLS))
def test_hard_pushes_and_pops_are_a_stack_or_a_queue_of_the_pushed_values(moves, end, impl):
    """Soft = hard: with d, u ∈ {0, 1} each step pops the top (stack) or front (queue) of a Python
    list, pushes on top, and reads the top or front, zeros when empty."""
    capacity, width = len(moves), 2
    strengths = torch.zeros(1, capacity, dtype=torch.float64)
    values = torch.zeros(1, capacity, width, dtype=torch.float64)
    items = []
    for t, (pushes, pops) in enumerate(moves):
        v = torch.tensor([[t + 1.0, -(t + 1.0)]], dtype=torch.float64)
        values = values.index_copy(1, torch.tensor([t]), v.unsqueeze(1))
        u, d = torch.tensor([float(pops)], dtype=torch.float64), torch.tensor([float(pushes)], dtype=torch.float64)
        strengths, r = strength_step(strengths, values, u, d, t, end=end, impl=impl)
        if pops and items:
            items.pop(-1 if end == "top" else 0)
        if pushes:
            items.append(v[0].tolist())
        expected = (items[-1] if end == "top" else items[0]) if items else [0.0] * width
        assert r[0].tolist() == expected


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["empty", "full pops and pushes", "huge values"])
def test_extreme_inputs_give_finiteoutputs_and_gradients(impl, case):
    strengths, values, u, d = _inputs(2, 5, 3, 3, seed=7, dtype=torch.float32)
    if case == "empty":
        strengths = torch.zeros_like(strengths)
    elif case == "full pops and pushes":
        strengths, u, d = torch.ones_like(strengths), torch.ones_like(u), torch.ones_like(d)
    else:
        values = values * 1e30
    leaves = [x.clone().requires_grad_() for x in (strengths, values, u, d)]
    new, r = strength_step(*leaves, 3, end="top", impl=impl)
    (new.sum() + r.sum()).backward()
    for x in [new, r, *(leaf.grad for leaf in leaves)]:
        assert torch.isfinite(x).all()


def test_bad_arguments_are_named():
    strengths, values, u, d = _inputs(2, 5, 3, 3, seed=8)
    with pytest.raises(ValueError, match="strength_step: end must be one of"):
        strength_step(strengths, values, u, d, 3, end="front")
    with pytest.raises(ValueError, match="strength_step: expected strengths"):
        strength_step(strengths, values[:, :4], u, d, 3, end="top")
    with pytest.raises(ValueError, match=r"row must be in \[0, C\)"):
        strength_step(strengths, values, u, d, 5, end="top")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
@pytest.mark.parametrize("end", ["top", "bottom"])
def test_full_size_triton_matches_the_reference_on_gpu(end):
    inputs = [x.float().cuda() for x in _inputs(256, 1024, 64, 600, seed=9)]
    want, want_grads = outputs_and_gradients(lambda *xs: strength_step(*xs, 600, end=end, impl="reference"), inputs)
    got, grads = outputs_and_gradients(lambda *xs: strength_step(*xs, 600, end=end, impl="triton"), inputs)
    for a, b in zip(got + grads, want + want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
