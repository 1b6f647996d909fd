"""Fused content addressing (diffvm.interp.kernels.content): the reference against the devices'
own `content_weights` and a plain loop, the Triton kernel (under TRITON_INTERPRET=1 on CPU) and the
custom op's backward against autograd of the reference, on awkward shapes, with and without key
masks, in float32 and float64."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import outputs_and_gradients

from diffvm.interp.kernels import NORM_EPS, _dispatch, content_weights, content_weights_reference
from diffvm.memory import addressing

IMPLS = ["reference", "triton"]
# (B, N, W, H): a single slot of width 1, primes, a word wider than 16, N past a row block
SHAPES = [(1, 1, 1, 1), (2, 5, 3, 3), (3, 7, 20, 2), (2, 300, 20, 2)]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(batch, slots, width, heads, *, masked, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(batch, slots, width, generator=gen, dtype=dtype)
    keys = torch.randn(batch, heads, width, generator=gen, dtype=dtype)
    strengths = 1 + 5 * torch.rand(batch, heads, generator=gen, dtype=dtype)
    mask = torch.rand(batch, heads, width, generator=gen, dtype=dtype) if masked else None
    return memory, keys, strengths, mask




def test_norm_guard_is_the_devices_guard():
    assert NORM_EPS == addressing.NORM_EPS


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("impl", ["oracle", *IMPLS])
def test_outputs_and_gradients_match_the_devices_content_weights(impl, masked):
    inputs = _inputs(2, 6, 5, 3, masked=masked, seed=1)
    fn = content_weights_reference if impl == "oracle" else lambda *xs: content_weights(*xs, impl=impl)
    want, want_grads = outputs_and_gradients(addressing.content_weights, inputs)
    got, grads = outputs_and_gradients(fn, inputs)
    if impl == "reference" and not masked:
        assert torch.equal(got, want)  # the same operations in the same order
    for a, b in zip([got, *grads], [want, *want_grads]):
        torch.testing.assert_close(a, b, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("impl", IMPLS)
def test_weights_match_a_plain_loop_over_the_papers_equations(impl):
    batch, slots, width, heads = 2, 4, 3, 2
    memory, keys, strengths, mask = _inputs(batch, slots, width, heads, masked=True, seed=2)
    got = content_weights(memory, keys, strengths, mask, impl=impl)
    for b in range(batch):
        for h in range(heads):
            m = mask[b, h].tolist()
            k = [ki * mi for ki, mi in zip(keys[b, h].tolist(), m)]
            k_norm = math.sqrt(sum(x * x for x in k) + NORM_EPS)
            cosines = []
            for n in range(slots):
                row = [x * mi for x, mi in zip(memory[b, n].tolist(), m)]
                row_norm = math.sqrt(sum(x * x for x in row) + NORM_EPS)
                cosines.append(sum(x * y for x, y in zip(k, row)) / (k_norm * row_norm))
            z = [math.exp(strengths[b, h].item() * c) for c in cosines]
            assert got[b, h].tolist() == pytest.approx([x / sum(z) for x in z], rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-N{}-W{}-H{}".format(*s))
@pytest.mark.parametrize("impl", IMPLS)
def test_output_and_every_gradient_match_autograd_of_the_reference(impl, shape, masked, dtype):
    inputs = _inputs(*shape, masked=masked, seed=3, dtype=dtype)
    want, want_grads = outputs_and_gradients(content_weights_reference, inputs)
    got, grads = outputs_and_gradients(lambda *xs: content_weights(*xs, impl=impl), inputs)
    for name, a, b in zip(["y", "dM", "dk", "dβ", "dm"], [got, *grads], [want, *want_grads]):
        assert a.dtype == dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl, masked):
    inputs = tuple(x.requires_grad_() for x in _inputs(1, 3, 2, 1, masked=masked, seed=4) if x is not None)
    assert torch.autograd.gradcheck(lambda *xs: content_weights(*xs, impl=impl), inputs)


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import content

    memory, keys, strengths, mask = (x.requires_grad_() for x in _inputs(2, 5, 3, 3, masked=True, seed=5))
    for mask_sq in (None, mask * mask):
        torch.library.opcheck(content._content, (memory, keys, strengths, mask_sq, triton))
        weights = content._content(memory, keys, strengths, mask_sq, triton).detach()
        grad = torch.randn(weights.shape, generator=torch.Generator().manual_seed(6), dtype=weights.dtype)
        detached = [None if x is None else x.detach() for x in (memory, keys, strengths, mask_sq)]
        torch.library.opcheck(content._content_backward, (grad, weights, *detached, triton))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(st.permutations(range(n)), st.integers(0, n - 1))),
       st.integers(0, 2**16), st.sampled_from(IMPLS))
def test_a_hard_strength_reads_the_one_matching_word(case, seed, impl):
    """Soft = hard: words are distinct one-hot directions at random scales; with the hard DNC's
    strength (1e4) the content weighting is one-hot on the word the key points to."""
    order, target = case
    slots = len(order)
    gen = torch.Generator().manual_seed(seed)
    words = torch.eye(slots, dtype=torch.float64)[list(order)] * (0.1 + torch.rand(slots, 1, generator=gen,
                                                                                    dtype=torch.float64))
    key = torch.eye(slots, dtype=torch.float64)[order[target]] * (0.1 + torch.rand(1, generator=gen,
                                                                                   dtype=torch.float64))
    got = content_weights(words.unsqueeze(0), key.view(1, 1, slots), torch.full((1, 1), 1e4, dtype=torch.float64),
                          impl=impl)
    expected = torch.nn.functional.one_hot(torch.tensor(target), slots).double()
    torch.testing.assert_close(got[0, 0], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["zero memory", "zero keys", "zero mask", "huge strength", "huge words"])
def test_extreme_inputs_give_finite_weights_and_gradients(impl, case, dtype):
    memory, keys, strengths, mask = _inputs(2, 5, 3, 2, masked=True, seed=7, dtype=dtype)
    if case == "zero memory":
        memory = torch.zeros_like(memory)
    elif case == "zero keys":
        keys = torch.zeros_like(keys)
    elif case == "zero mask":
        mask = torch.zeros_like(mask)
    elif case == "huge strength":
        strengths = torch.full_like(strengths, 1e4)
    else:
        memory = memory * 1e15
    leaves = [x.clone().requires_grad_() for x in (memory, keys, strengths, mask)]
    weights = content_weights(*leaves, impl=impl)
    (weights * torch.linspace(0, 1, 5, dtype=dtype)).sum().backward()
    for x in [weights, *(leaf.grad for leaf in leaves)]:
        assert torch.isfinite(x).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, dtype=dtype))
    if case != "huge strength" and case != "huge words":
        torch.testing.assert_close(weights, torch.full_like(weights, 0.2))  # no similarity: uniform


def test_dispatch_refuses_an_unmet_triton_request_and_bad_arguments(monkeypatch):
    memory, keys, strengths, mask = _inputs(1, 3, 2, 1, masked=True, seed=8)
    with pytest.raises(ValueError, match="content_weights: expected memory"):
        content_weights(memory, keys[..., :1], strengths)
    with pytest.raises(ValueError, match="mask"):
        content_weights(memory, keys, strengths, mask[..., :1])
    with pytest.raises(TypeError, match="float32 or float64"):
        content_weights(memory, keys, strengths.float())
    monkeypatch.setattr(_dispatch, "_TRITON_INTERPRET", False)
    with pytest.raises(RuntimeError, match="content_weights: impl='triton' needs CUDA tensors"):
        content_weights(memory, keys, strengths, impl="triton")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_full_size_triton_matches_the_reference_on_gpu(masked):
    inputs = [None if x is None else x.float().cuda() for x in _inputs(16, 4096, 64, 5, masked=masked, seed=9)]
    want, want_grads = outputs_and_gradients(lambda *xs: content_weights(*xs, impl="reference"), inputs)
    got, grads = outputs_and_gradients(lambda *xs: content_weights(*xs, impl="triton"), inputs)
    for a, b in zip([got, *grads], [want, *want_grads]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
