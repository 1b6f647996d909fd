"""Usage, retention and allocation (diffvm.memory.usage) against plain loops, a discrete
allocator, their invariants and their gradients."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.memory.usage import allocation_weights, retention, update_usage, usage_order_resolution


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _loop_allocation(usage: list[float]) -> list[float]:
    """a[φ_j] = (1 − u[φ_j]) Π_{i<j} u[φ_i], with φ from Python's (stable) sort of the usages on
    the float64 grid of `usage_order_resolution` (usages closer than that are tied; ties go by index)."""
    grid = usage_order_resolution(torch.float64)
    free_list = sorted(range(len(usage)), key=lambda n: round(usage[n] / grid))
    allocation, product = [0.0] * len(usage), 1.0
    for n in free_list:
        allocation[n] = (1 - usage[n]) * product
        product *= usage[n]
    return allocation


def test_shapes():
    usage, reads, writes, gates = _rand(3, 5), _rand(3, 2, 5), _rand(3, 5), _rand(3, 2)
    psi = retention(gates, reads)
    assert psi.shape == (3, 5)
    assert update_usage(usage, writes, psi).shape == (3, 5)
    assert allocation_weights(usage).shape == (3, 5)


def test_retention_and_usage_match_a_loop():
    batch, heads, slots = 2, 3, 5
    gates, reads = _rand(batch, heads, seed=1), _rand(batch, heads, slots, seed=2) / slots
    usage, writes = _rand(batch, slots, seed=3), _rand(batch, slots, seed=4) / slots
    psi = retention(gates, reads)
    new_usage = update_usage(usage, writes, psi)
    for b in range(batch):
        for n in range(slots):
            expected_psi = math.prod(1 - gates[b, i].item() * reads[b, i, n].item() for i in range(heads))
            u, w = usage[b, n].item(), writes[b, n].item()
            assert psi[b, n].item() == pytest.approx(expected_psi, abs=1e-12)
            assert new_usage[b, n].item() == pytest.approx((u + w - u * w) * expected_psi, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0, 1), min_size=1, max_size=7))
def test_allocation_matches_a_python_sort_loop(usage):
    # coarse values make ties common: both sorts are stable, so ties go by slot index
    got = allocation_weights(torch.tensor([usage], dtype=torch.float64))[0].tolist()
    assert got == pytest.approx(_loop_allocation(usage), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_off_residues_do_not_reorder_the_free_list(dtype):
    # a slot freed by a read of weight 1 − ε keeps usage ε: still free, and first by index
    eps = torch.finfo(dtype).eps
    allocation = allocation_weights(torch.tensor([[eps, 1 - eps, 0.0]], dtype=dtype))[0]
    torch.testing.assert_close(allocation, torch.tensor([1.0, 0.0, 0.0], dtype=dtype), atol=4 * eps, rtol=0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=8))
def test_binary_usage_allocates_the_lowest_indexed_free_slot(used):
    allocation = allocation_weights(torch.tensor([used], dtype=torch.float64))[0].tolist()
    free = [n for n, u in enumerate(used) if not u]
    expected = [1.0 if free and n == free[0] else 0.0 for n in range(len(used))]
    assert allocation == expected


def test_fully_used_memory_allocates_nothing_and_has_finite_gradients():
    usage = torch.ones(2, 6, dtype=torch.float64, requires_grad=True)
    allocation = allocation_weights(usage)
    assert torch.equal(allocation, torch.zeros_like(allocation))
    allocation.sum().backward()
    assert torch.isfinite(usage.grad).all()
    # just below full: allocation ≈ 0, still finite
    nearly = allocation_weights(torch.full((1, 6), 1 - 1e-7))
    assert torch.isfinite(nearly).all() and nearly.sum() < 1e-6


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 3), st.integers(1, 6))
def test_usage_stays_in_unit_interval_and_allocation_sums_to_one_minus_product(seed, slots, heads, steps):
    gen = torch.Generator().manual_seed(seed)
    usage = torch.zeros(2, slots, dtype=torch.float64)
    for _ in range(steps):
        # saturated and soft weightings alike; writes and each head's reads sum to at most 1
        scale = 10 ** torch.randint(0, 3, (1,), generator=gen).item()
        writes = torch.softmax(scale * torch.randn(2, slots + 1, generator=gen, dtype=torch.float64), -1)[:, :slots]
        reads = torch.softmax(scale * torch.randn(2, heads, slots, generator=gen, dtype=torch.float64), -1)
        gates = torch.rand(2, heads, generator=gen, dtype=torch.float64)
        gates = gates.round() if scale > 1 else gates
        usage = update_usage(usage, writes, retention(gates, reads))
        assert ((usage >= 0) & (usage <= 1)).all()
        allocation = allocation_weights(usage)
        assert (allocation >= 0).all()
        torch.testing.assert_close(allocation.sum(-1), 1 - usage.prod(-1), atol=1e-12, rtol=0)


def test_allocation_gradcheck_at_distinct_usages():
    # distinct usages, including the exact ends 0 and 1 (zeros in the cumulative product)
    usage = torch.tensor([[0.3, 0.0, 0.9, 0.55, 1.0, 0.1], [0.2, 0.4, 0.6, 0.8, 0.05, 0.95]],
                         dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(allocation_weights, (usage,))


def test_allocation_jumps_where_a_usage_tie_breaks():
    # the sort's genuine non-differentiability: at a tie the free list's order flips, and the
    # allocation moves by O(1) for an arbitrarily small change of usage
    tied = allocation_weights(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    broken = allocation_weights(torch.tensor([[0.5, 0.5 - 1e-9]], dtype=torch.float64))
    torch.testing.assert_close(tied, torch.tensor([[0.5, 0.25]], dtype=torch.float64))
    torch.testing.assert_close(broken, torch.tensor([[0.25, 0.5]], dtype=torch.float64), atol=1e-8, rtol=0)
