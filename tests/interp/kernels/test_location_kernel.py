"""The fused NTM location addressing (diffvm.interp.kernels.location): the reference against the
devices' own interpolate, shift and sharpen and a plain loop, the Triton kernel (under
TRITON_INTERPRET=1 on CPU) and the custom op's backward against autograd of the reference, on
awkward shapes, in float32 and float64, and a head driven by location alone moving as a Turing
machine's head."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import outputs_and_gradients

from diffvm.interp.kernels import _dispatch, location_weights, location_weights_reference
from diffvm.memory.addressing import interpolate, sharpen, shift

IMPLS = ["reference", "triton"]
# (B, H, N, S): one slot with and without shifts, primes, more offsets than slots, N past 256
SHAPES = [(1, 1, 1, 1), (1, 1, 1, 3), (2, 3, 5, 3), (3, 2, 7, 5), (2, 1, 3, 7), (2, 2, 300, 3)]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(batch, heads, slots, size, *, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    simplex = lambda *shape: torch.softmax(torch.randn(*shape, generator=gen, dtype=dtype), -1)
    return (simplex(batch, heads, slots), simplex(batch, heads, slots), torch.rand(batch, heads, generator=gen,
                                                                                    dtype=dtype),
            simplex(batch, heads, size), 1 + 3 * torch.rand(batch, heads, generator=gen, dtype=dtype))




def _devices_chain(content, previous, gate, shifts, gamma):
    return sharpen(shift(interpolate(content, previous, gate), shifts), gamma)


@pytest.mark.parametrize("impl", ["oracle", *IMPLS])
def test_weights_and_gradients_match_the_devices_functions(impl):
    inputs = _inputs(2, 3, 6, 3, seed=1)
    fn = location_weights_reference if impl == "oracle" else lambda *xs: location_weights(*xs, impl=impl)
    want, want_grads = outputs_and_gradients(_devices_chain, inputs)
    got, grads = outputs_and_gradients(fn, inputs)
    if impl != "triton":
        assert torch.equal(got, want)  # the same operations in the same order
    for a, b in zip([got, *grads], [want, *want_grads]):
        torch.testing.assert_close(a, b, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("impl", IMPLS)
def test_weights_match_a_plain_loop_over_the_papers_equations(impl):
    batch, heads, slots, size = 2, 2, 5, 3
    content, previous, gate, shifts, gamma = _inputs(batch, heads, slots, size, seed=2)
    got = location_weights(content, previous, gate, shifts, gamma, impl=impl)
    r = size // 2
    for b in range(batch):
        for h in range(heads):
            g = gate[b, h].item()
            wg = [g * content[b, h, i].item() + (1 - g) * previous[b, h, i].item() for i in range(slots)]  # eq. 7
            wt = [sum(shifts[b, h, d + r].item() * wg[(i - d) % slots] for d in range(-r, r + 1))
                  for i in range(slots)]  # eq. 8
            powered = [x ** gamma[b, h].item() for x in wt]  # eq. 9
            assert got[b, h].tolist() == pytest.approx([x / sum(powered) for x in powered], rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-H{}-N{}-S{}".format(*s))
@pytest.mark.parametrize("impl", IMPLS)
def test_output_and_every_gradient_match_autograd_of_the_reference(impl, shape, dtype):
    inputs = _inputs(*shape, seed=3, dtype=dtype)
    want, want_grads = outputs_and_gradients(location_weights_reference, inputs)
    got, grads = outputs_and_gradients(lambda *xs: location_weights(*xs, impl=impl), inputs)
    for name, a, b in zip(["w", "dw^c", "dw_prev", "dg", "ds", "dγ"], [got, *grads], [want, *want_grads]):
        assert a.dtype == dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl):
    inputs = tuple(x.requires_grad_() for x in _inputs(1, 1, 4, 3, seed=4))
    assert torch.autograd.gradcheck(lambda *xs: location_weights(*xs, impl=impl), inputs)


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import location

    inputs = [x.requires_grad_() for x in _inputs(2, 2, 5, 3, seed=5)]
    torch.library.opcheck(location._location, (*inputs, triton))
    grad = torch.randn(2, 2, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.library.opcheck(location._location_backward, (grad, *(x.detach() for x in inputs), triton))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))), st.integers(0, 3),
       st.integers(-3, 3), st.sampled_from([1.0, 2.5]), st.sampled_from(IMPLS))
def test_a_head_driven_by_location_alone_moves_by_its_shift(case, r, offset, gamma, impl):
    """Soft = hard: with g = 0, a one-hot last position and a one-hot shift at offset d, the head
    moves to (position + d) mod N, exactly up to the (tiny)^γ that sharpening leaves elsewhere."""
    slots, position = case
    offset = max(-r, min(r, offset))
    previous = torch.nn.functional.one_hot(torch.tensor([[position]]), slots).double()  # (1, 1, N)
    shifts = torch.nn.functional.one_hot(torch.tensor([[offset + r]]), 2 * r + 1).double()
    content = torch.full((1, 1, slots), 1.0 / slots, dtype=torch.float64)
    got = location_weights(content, previous, torch.zeros(1, 1, dtype=torch.float64), shifts,
                           torch.full((1, 1), gamma, dtype=torch.float64), impl=impl)
    expected = torch.roll(previous, offset, dims=-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=slots * torch.finfo(torch.float64).tiny ** 0.5)
    assert got.argmax().item() == (position + offset) % slots


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["one-hot everything", "huge gamma", "zero shift weights"])
def test_extreme_inputs_give_finite_weights_and_gradients(impl, case, dtype):
    content, previous, gate, shifts, gamma = _inputs(2, 2, 5, 3, seed=7, dtype=dtype)
    if case == "one-hot everything":
        content, previous = (torch.zeros_like(x).index_fill_(-1, torch.tensor([1]), 1.0) for x in (content, previous))
        shifts = torch.zeros_like(shifts).index_fill_(-1, torch.tensor([2]), 1.0)
    elif case == "huge gamma":
        gamma = torch.full_like(gamma, 1e4)
    else:
        shifts = torch.zeros_like(shifts)  # w̃ = 0 everywhere: every slot at the floor
    leaves = [x.clone().requires_grad_() for x in (content, previous, gate, shifts, gamma)]
    weights = location_weights(*leaves, impl=impl)
    (weights * torch.linspace(0, 1, 5, dtype=dtype)).sum().backward()
    for x in [weights, *(leaf.grad for leaf in leaves)]:
        assert torch.isfinite(x).all()
    assert math.isclose(weights.sum().item(), 4.0, rel_tol=1e-5)


def test_bad_arguments_are_named():
    content, previous, gate, shifts, gamma = _inputs(2, 2, 5, 3, seed=8)
    with pytest.raises(ValueError, match="location_weights: expected content"):
        location_weights(content, previous[:, :1], gate, shifts, gamma)
    with pytest.raises(ValueError, match="odd"):
        location_weights(content, previous, gate, shifts[..., :2], gamma)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
def test_full_size_triton_matches_the_reference_on_gpu():
    inputs = [x.float().cuda() for x in _inputs(64, 5, 4096, 3, seed=9)]
    want, want_grads = outputs_and_gradients(lambda *xs: location_weights(*xs, impl="reference"), inputs)
    got, grads = outputs_and_gradients(lambda *xs: location_weights(*xs, impl="triton"), inputs)
    for a, b in zip([got, *grads], [want, *want_grads]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
