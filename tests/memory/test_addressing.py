import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.memory.addressing import content_weights, cosine_similarity, interpolate, sharpen, shift


def _simplex(*shape, gen, dtype=torch.float64):
    return torch.softmax(torch.randn(*shape, generator=gen, dtype=dtype), -1)


def _one_hot(index, n, dtype=torch.float64):
    return torch.nn.functional.one_hot(torch.as_tensor(index), n).to(dtype)


# --- content addressing (eqs. 5–6) -------------------------------------------------------------
def test_content_weights_match_a_plain_loop():
    gen = torch.Generator().manual_seed(0)
    memory, keys = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64), torch.randn(2, 4, 3, generator=gen,
                                                                                         dtype=torch.float64)
    beta = 1 + torch.rand(2, 4, generator=gen, dtype=torch.float64) * 5
    got = content_weights(memory, keys, beta)
    for b in range(2):
        for h in range(4):
            cos = [float(torch.dot(keys[b, h], memory[b, i]) / (keys[b, h].norm() * memory[b, i].norm()))
                   for i in range(5)]
            z = sum(math.exp(beta[b, h].item() * c) for c in cos)
            want = [math.exp(beta[b, h].item() * c) / z for c in cos]
            assert got[b, h].tolist() == pytest.approx(want, rel=1e-5)


def test_content_weights_with_huge_strength_are_the_argmax_of_cosine():
    gen = torch.Generator().manual_seed(1)
    memory, keys = torch.randn(4, 7, 5, generator=gen), torch.randn(4, 3, 5, generator=gen)
    got = content_weights(memory, keys, torch.full((4, 3), 1e4))
    want = _one_hot(cosine_similarity(memory, keys).argmax(-1), 7, torch.float32)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("case", ["zero keys", "zero memory"])
def test_content_weights_of_zero_keys_or_memory_are_uniform_with_finite_gradients(case):
    memory = torch.zeros(2, 4, 3) if case == "zero memory" else torch.randn(2, 4, 3)
    keys = torch.zeros(2, 2, 3) if case == "zero keys" else torch.randn(2, 2, 3)
    memory.requires_grad_(True)
    keys.requires_grad_(True)
    beta = torch.full((2, 2), 1e4, requires_grad=True)
    w = content_weights(memory, keys, beta)
    torch.testing.assert_close(w, torch.full((2, 2, 4), 0.25))
    (w * torch.randn_like(w)).sum().backward()
    for x in (memory, keys, beta):
        assert torch.isfinite(x.grad).all()


# --- interpolation (eq. 7) ---------------------------------------------------------------------
def test_interpolation_gate_selects_content_or_previous_and_mixes_between():
    gen = torch.Generator().manual_seed(2)
    content, previous = _simplex(3, 2, 6, gen=gen), _simplex(3, 2, 6, gen=gen)
    assert torch.equal(interpolate(content, previous, torch.zeros(3, 2)), previous)
    assert torch.equal(interpolate(content, previous, torch.ones(3, 2, dtype=torch.float64)), content)
    g = torch.rand(3, 2, generator=gen, dtype=torch.float64)
    mixed = interpolate(content, previous, g)
    torch.testing.assert_close(mixed, g[..., None] * content + (1 - g[..., None]) * previous)
    torch.testing.assert_close(mixed.sum(-1), torch.ones(3, 2, dtype=torch.float64))


# --- shift (eq. 8) -----------------------------------------------------------------------------
@pytest.mark.parametrize("n, r", [(1, 0), (1, 1), (5, 1), (6, 2), (3, 2), (7, 3)], ids=lambda x: str(x))
def test_shift_matches_the_plain_sum_of_eq_8(n, r):
    gen = torch.Generator().manual_seed(3)
    w, s = _simplex(2, 3, n, gen=gen), _simplex(2, 3, 2 * r + 1, gen=gen)
    got = shift(w, s)
    assert got.shape == (2, 3, n)
    for b in range(2):
        for h in range(3):
            # w̃(i) = Σ_j w(j)·s(i − j), the offset i − j read modulo N among −r … +r
            want = [sum(w[b, h, j].item() * s[b, h, d + r].item()
                        for j in range(n) for d in range(-r, r + 1) if (i - j - d) % n == 0)
                    for i in range(n)]
            assert got[b, h].tolist() == pytest.approx(want, rel=1e-12)
    torch.testing.assert_close(got.sum(-1), torch.ones(2, 3, dtype=torch.float64))


@given(n=st.integers(1, 9), r=st.integers(0, 4), offset=st.integers(-4, 4), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_shift_with_a_one_hot_shift_weighting_rotates_exactly(n, r, offset, seed):
    offset = max(-r, min(r, offset))
    w = _simplex(2, 3, n, gen=torch.Generator().manual_seed(seed))
    s = _one_hot(offset + r, 2 * r + 1).expand(2, 3, -1)
    assert torch.equal(shift(w, s), torch.roll(w, offset, dims=-1))


def test_shift_rejects_an_even_shift_weighting():
    with pytest.raises(ValueError, match="odd"):
        shift(torch.ones(1, 1, 4) / 4, torch.ones(1, 1, 2) / 2)


# --- sharpening (eq. 9) ------------------------------------------------------------------------
def test_sharpen_matches_the_power_quotient_of_eq_9():
    gen = torch.Generator().manual_seed(4)
    w, gamma = _simplex(3, 2, 6, gen=gen), 1 + 4 * torch.rand(3, 2, generator=gen, dtype=torch.float64)
    want = w ** gamma[..., None] / (w ** gamma[..., None]).sum(-1, keepdim=True)
    torch.testing.assert_close(sharpen(w, gamma), want)
    torch.testing.assert_close(sharpen(w, torch.ones(3, 2, dtype=torch.float64)), w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("gamma", [1.0, 1.5, 1e4])
def test_sharpening_a_one_hot_keeps_it_one_hot(dtype, gamma):
    w = _one_hot([[0, 3], [5, 1]], 6, dtype)
    out = sharpen(w, torch.full((2, 2), gamma, dtype=dtype))
    assert torch.equal(out.argmax(-1), torch.tensor([[0, 3], [5, 1]]))
    torch.testing.assert_close(out, w, rtol=0, atol=torch.finfo(dtype).eps)


def test_sharpen_with_huge_gamma_is_the_argmax_where_the_power_quotient_is_nan():
    gen = torch.Generator().manual_seed(5)
    w, gamma = _simplex(3, 2, 8, gen=gen, dtype=torch.float32), torch.full((3, 2), 1e4)
    naive = w ** gamma[..., None] / (w ** gamma[..., None]).sum(-1, keepdim=True)
    assert torch.isnan(naive).any()  # every w^γ underflows: 0/0
    torch.testing.assert_close(sharpen(w, gamma), _one_hot(w.argmax(-1), 8, torch.float32))


@pytest.mark.parametrize("gamma", [1.0, 1.0 + 1e-7, 3.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_sharpen_of_zero_and_subnormal_weights_has_finite_values_and_gradients(gamma, dtype):
    tiny = torch.finfo(dtype).tiny
    w = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [1 - 3 * tiny, tiny, tiny / 4, tiny]]],
                     dtype=dtype, requires_grad=True)
    g = torch.full((1, 3), gamma, dtype=dtype, requires_grad=True)
    out = sharpen(w, g)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 3, dtype=dtype))
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(g.grad).all()


# --- the chain ----------------------------------------------------------------------------------
@given(n=st.integers(1, 8), r=st.integers(0, 3), scale=st.sampled_from([1.0, 30.0, 1e4]), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_the_addressing_chain_stays_on_the_simplex(n, r, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    raw = lambda *shape: scale * torch.randn(*shape, generator=gen)
    memory, keys = raw(2, n, 4), raw(2, 3, 4)
    beta, gamma = 1 + torch.nn.functional.softplus(raw(2, 3)), 1 + torch.nn.functional.softplus(raw(2, 3))
    w = content_weights(memory, keys, beta)
    w = interpolate(w, _simplex(2, 3, n, gen=gen, dtype=torch.float32), torch.sigmoid(raw(2, 3)))
    w = sharpen(shift(w, torch.softmax(raw(2, 3, 2 * r + 1), -1)), gamma)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3))


def test_location_addressing_gradients_float64():
    gen = torch.Generator().manual_seed(6)
    args = (_simplex(2, 3, 5, gen=gen), _simplex(2, 3, 5, gen=gen), torch.rand(2, 3, generator=gen,
            dtype=torch.float64), _simplex(2, 3, 3, gen=gen), 1 + 2 * torch.rand(2, 3, generator=gen,
                                                                                   dtype=torch.float64))
    args = tuple(x.requires_grad_(True) for x in args)
    chain = lambda content, previous, g, s, gamma: sharpen(shift(interpolate(content, previous, g), s), gamma)
    assert torch.autograd.gradcheck(chain, args)
