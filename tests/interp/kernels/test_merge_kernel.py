"""The fused register merge (diffvm.interp.kernels.merge): the reference against the value types'
own merge and a plain loop, the Triton kernel (under TRITON_INTERPRET=1 on CPU) and the custom
op's backward against autograd of the reference, on awkward shapes, in float32 and float64."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import outputs_and_gradients

from diffvm.interp import Pointer, Scalar, Vector
from diffvm.interp.kernels import _dispatch, merge_results, merge_results_reference

IMPLS = ["reference", "triton"]
# (K, B, *shape): one candidate of a scalar, primes, a value past one block of the kernel
SHAPES = [(1, 1), (3, 2, 5), (2, 3, 7, 2), (4, 2, 1031)]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(k, batch, *shape, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    weights = 0.9 * torch.softmax(torch.randn(batch, k, generator=gen, dtype=dtype), -1)  # Σ_k w_k = 0.9
    return (weights, torch.randn(k, batch, *shape, generator=gen, dtype=dtype),
            torch.randn(batch, *shape, generator=gen, dtype=dtype))




@pytest.mark.parametrize("value_type", [Scalar, Vector[3], Pointer[4]], ids=str)
def test_reference_is_the_value_types_merge_to_the_bit(value_type):
    inputs = _inputs(3, 4, *value_type.shape, seed=1)
    assert torch.equal(merge_results_reference(*inputs), value_type.merge(*inputs))
    assert torch.equal(merge_results(*inputs, impl="reference"), value_type.merge(*inputs))


@pytest.mark.parametrize("impl", IMPLS)
def test_merge_matches_a_plain_loop(impl):
    weights, candidates, previous = _inputs(3, 2, 4, seed=2)
    got = merge_results(weights, candidates, previous, impl=impl)
    for b in range(2):
        kept = 1 - sum(weights[b].tolist())
        for d in range(4):
            want = sum(weights[b, k].item() * candidates[k, b, d].item() for k in range(3))
            want += kept * previous[b, d].item()
            assert got[b, d].item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"K{s[0]}-B{s[1]}-shape{s[2:]}")
@pytest.mark.parametrize("impl", IMPLS)
def test_output_and_every_gradient_match_autograd_of_the_reference(impl, shape, dtype):
    inputs = _inputs(*shape, seed=3, dtype=dtype)
    want, want_grads = outputs_and_gradients(merge_results_reference, inputs)
    got, grads = outputs_and_gradients(lambda *xs: merge_results(*xs, impl=impl), inputs)
    for name, a, b in zip(["r", "dw", "dy", "dr_prev"], [got, *grads], [want, *want_grads]):
        assert a.dtype == dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl):
    inputs = tuple(x.requires_grad_() for x in _inputs(2, 2, 3, seed=4))
    assert torch.autograd.gradcheck(lambda *xs: merge_results(*xs, impl=impl), inputs)


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import merge as module

    weights, candidates, previous = (x.requires_grad_() for x in _inputs(3, 2, 5, seed=5))
    torch.library.opcheck(module._merge, (weights, candidates, previous, triton))
    grad = torch.randn(2, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.library.opcheck(module._merge_backward, (grad, weights.detach(), candidates.detach(), previous.detach(),
                                                   triton))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4).flatmap(lambda k: st.tuples(st.just(k), st.integers(-1, k - 1))), st.integers(0, 2**16),
       st.sampled_from(IMPLS))
def test_one_hot_weights_select_a_result_or_keep_the_register_exactly(case, seed, impl):
    """Soft = hard: with the op choice one-hot on candidate k the register becomes y_k exactly; with
    the mass spent on ops of other types (w = 0) it keeps its value exactly."""
    k, chosen = case
    _, candidates, previous = _inputs(k, 3, 5, seed=seed)
    weights = torch.zeros(3, k, dtype=torch.float64)
    if chosen >= 0:
        weights[:, chosen] = 1.0
    got = merge_results(weights, candidates, previous, impl=impl)
    assert torch.equal(got, candidates[chosen] if chosen >= 0 else previous)


@pytest.mark.parametrize("impl", IMPLS)
def test_extreme_values_give_finite_results_and_gradients(impl):
    weights, candidates, previous = _inputs(3, 2, 4, seed=7, dtype=torch.float32)
    candidates, previous = candidates * 1e30, previous * 1e30
    leaves = [x.clone().requires_grad_() for x in (weights, candidates, previous)]
    out = merge_results(*leaves, impl=impl)
    out.sum().backward()
    for x in [out, *(leaf.grad for leaf in leaves)]:
        assert torch.isfinite(x).all()


def test_bad_arguments_are_named():
    weights, candidates, previous = _inputs(3, 2, 4, seed=8)
    with pytest.raises(ValueError, match="merge_results: expected weights"):
        merge_results(weights, candidates[:2], previous)
    with pytest.raises(TypeError, match="float32 or float64"):  # the op takes one dtype
        merge_results(weights.float(), candidates, previous, impl="reference")
    with pytest.raises(TypeError, match="float32 or float64"):
        merge_results(weights.half(), candidates.half(), previous.half(), impl="reference")


def test_auto_merges_mixed_dtypes_as_pytorch_promotes_them():
    # the machine merges float32 instruction probabilities into float64 registers (the demo does)
    weights, candidates, previous = _inputs(3, 2, 4, seed=8)
    got = merge_results(weights.float(), candidates, previous)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, merge_results_reference(weights.float(), candidates, previous), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
def test_full_size_triton_matches_the_reference_on_gpu():
    inputs = [x.float().cuda() for x in _inputs(16, 256, 4096, seed=9)]
    want, want_grads = outputs_and_gradients(lambda *xs: merge_results(*xs, impl="reference"), inputs)
    got, grads = outputs_and_gradients(lambda *xs: merge_results(*xs, impl="triton"), inputs)
    for a, b in zip([got, *grads], [want, *want_grads]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
