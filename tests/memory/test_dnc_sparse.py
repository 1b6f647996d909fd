"""The sparse link matrix (diffvm.memory.linkage.sparse_linkage_step, DNCMemory(link_top_k=K)):
shapes, values against a plain loop over the approximation's equations, K ≥ N against the dense
link, one-hot writes and the hard DNC against the dense link, invariants, gradients, extreme
inputs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.interp.device import check_device
from diffvm.interp.kernels import linkage_step
from diffvm.memory.dnc import DNCMemory
from diffvm.memory.linkage import (
    LinkageState,
    SparseLinkageState,
    initial_linkage,
    initial_sparse_linkage,
    sparse_linkage_step,
)

F64 = torch.float64


def _weightings(gen, *shape, total=0.9):
    """Random nonnegative weightings over the last axis, each summing to `total`."""
    return total * torch.softmax(2 * torch.randn(*shape, generator=gen, dtype=F64), -1)


def _dense(state: SparseLinkageState) -> torch.Tensor:
    """The (B, N, N) link matrix that a sparse state stands for."""
    batch, slots, _ = state.index.shape
    return state.value.new_zeros(batch, slots, slots).scatter_add(-1, state.index, state.value)


def _random_sparse(gen, batch, slots, k, steps=4):
    """A sparse state after a few soft writes, and the read weightings of those steps."""
    state = initial_sparse_linkage(batch, slots, k, dtype=F64)
    for _ in range(steps):
        state, _, _ = sparse_linkage_step(state, _weightings(gen, batch, slots), _weightings(gen, batch, 1, slots))
    return state


def _loop_step(link, p, w, r, k):
    """One step of the approximation (diffvm.memory.linkage's docstring) on plain lists: p̂ the K
    largest entries of p, the dense update with p̂, each row cut to its K largest entries."""
    n = len(p)
    kept_p = sorted(range(n), key=lambda j: -p[j])[:k]
    p_hat = [p[j] if j in kept_p else 0.0 for j in range(n)]
    new = [[0.0 if i == j else (1 - w[i] - w[j]) * link[i][j] + w[i] * p_hat[j] for j in range(n)] for i in range(n)]
    for row in new:
        kept = sorted(range(n), key=lambda j: -row[j])[:k]
        for j in range(n):
            row[j] = row[j] if j in kept else 0.0
    p = [(1 - sum(w)) * p[j] + w[j] for j in range(n)]
    forward = [[sum(new[i][j] * rh[j] for j in range(n)) for i in range(n)] for rh in r]
    backward = [[sum(new[i][j] * rh[i] for i in range(n)) for j in range(n)] for rh in r]
    return new, p, forward, backward


# --- configuration and shapes -------------------------------------------------------------


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True, "8"])
def test_bad_top_k_raises_value_error_naming_it(top_k):
    with pytest.raises(ValueError, match="link_top_k"):
        DNCMemory(6, 3, link_top_k=top_k)
    with pytest.raises(ValueError, match="top_k"):
        initial_sparse_linkage(2, 6, top_k)


def test_shapes_of_the_sparse_state_and_reads():
    device = DNCMemory(7, 3, 2, link_top_k=3)
    state = device.initial_state(4, dtype=F64)
    assert type(state.linkage) is SparseLinkageState
    assert state.linkage.index.shape == state.linkage.value.shape == (4, 7, 3)
    assert state.linkage.index.dtype == torch.int64 and state.linkage.precedence.shape == (4, 7)
    assert not state.linkage.value.any() and not state.linkage.precedence.any()
    raw = torch.randn(4, device.interface_size, generator=torch.Generator().manual_seed(0), dtype=F64)
    read, new = device(device.interface_from_raw(raw), state)
    assert read.shape == (4, 6) and new.linkage.index.shape == (4, 7, 3) and new.read_weights.shape == (4, 2, 7)


def test_top_k_above_the_slots_keeps_every_entry():
    state = initial_sparse_linkage(2, 3, 8)
    assert state.index.shape == (2, 3, 3) and state.index[0, 0].tolist() == [0, 1, 2]


def test_mismatched_shapes_raise_naming_the_arguments():
    state = initial_sparse_linkage(2, 5, 2, dtype=F64)
    with pytest.raises(ValueError, match="write_weights"):
        sparse_linkage_step(state, torch.zeros(2, 4, dtype=F64), torch.zeros(2, 1, 5, dtype=F64))


# --- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("slots, k, heads", [(5, 2, 1), (6, 3, 2), (7, 1, 1)])
def test_steps_match_a_plain_loop_over_the_equations(slots, k, heads):
    gen = torch.Generator().manual_seed(slots * 10 + k)
    batch = 2
    state = initial_sparse_linkage(batch, slots, k, dtype=F64)
    loop = [([[0.0] * slots for _ in range(slots)], [0.0] * slots) for _ in range(batch)]
    for _ in range(6):
        w, r = _weightings(gen, batch, slots), _weightings(gen, batch, heads, slots)
        state, forward, backward = sparse_linkage_step(state, w, r)
        for b in range(batch):
            link, p, f, bw = _loop_step(*loop[b], w[b].tolist(), r[b].tolist(), k)
            loop[b] = (link, p)
            torch.testing.assert_close(_dense(state)[b], torch.tensor(link, dtype=F64), atol=1e-14, rtol=1e-12)
            torch.testing.assert_close(state.precedence[b], torch.tensor(p, dtype=F64), atol=1e-14, rtol=1e-12)
            torch.testing.assert_close(forward[b], torch.tensor(f, dtype=F64), atol=1e-14, rtol=1e-12)
            torch.testing.assert_close(backward[b], torch.tensor(bw, dtype=F64), atol=1e-14, rtol=1e-12)
    # the cut engaged: some rows had more than K candidates
    assert (_dense(state) > 0).sum(-1).max() == k


@pytest.mark.parametrize("k", [5, 9])
def test_with_k_at_least_n_the_sparse_link_is_the_dense_one(k):
    gen = torch.Generator().manual_seed(3)
    sparse, dense = initial_sparse_linkage(2, 5, k, dtype=F64), initial_linkage(2, 5, dtype=F64)
    for _ in range(6):
        w, r = _weightings(gen, 2, 5), _weightings(gen, 2, 2, 5)
        sparse, f_s, b_s = sparse_linkage_step(sparse, w, r)
        dense, f_d, b_d = linkage_step(dense, w, r)
        for got, expected in [(_dense(sparse), dense.link), (sparse.precedence, dense.precedence), (f_s, f_d),
                              (b_s, b_d)]:
            torch.testing.assert_close(got, expected, atol=1e-15, rtol=1e-13)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 4), st.sampled_from([1.0, 10.0, 1e3]))
def test_rows_keep_distinct_columns_and_the_link_stays_substochastic(seed, slots, k, sharpness):
    gen = torch.Generator().manual_seed(seed)
    state = initial_sparse_linkage(2, slots, k, dtype=F64)
    for _ in range(8):
        gate = torch.rand(2, 1, generator=gen, dtype=F64)
        w = gate * torch.softmax(sharpness * torch.randn(2, slots, generator=gen, dtype=F64), -1)
        state, forward, backward = sparse_linkage_step(state, w, _weightings(gen, 2, 1, slots))
        index, value, p = state
        assert (index.sort(-1).values.diff(dim=-1) > 0).all()  # distinct within each row
        link = _dense(state)
        assert ((link >= 0) & (link <= 1)).all() and not link.diagonal(dim1=-2, dim2=-1).any()
        assert (link.sum(-1) <= 1 + 1e-12).all() and (link.sum(-2) <= 1 + 1e-12).all()
        assert (p >= 0).all() and (p.sum(-1) <= 1 + 1e-12).all()
        assert (forward >= 0).all() and (backward >= -1e-15).all()


# --- one-hot writes and the hard DNC ------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(-1, n - 1), max_size=12))),
       st.integers(1, 3))
def test_one_hot_writes_give_exactly_the_dense_write_order(case, k):
    # slot −1 is a step without a write; the dense link's write order is tested in test_linkage.py
    slots, order = case
    sparse, dense = initial_sparse_linkage(1, slots, k, dtype=F64), initial_linkage(1, slots, dtype=F64)
    reads = torch.zeros(1, 1, slots, dtype=F64)
    for slot in order:
        w = torch.zeros(1, slots, dtype=F64)
        if slot >= 0:
            w[0, slot] = 1
        sparse, f_s, b_s = sparse_linkage_step(sparse, w, reads)
        dense, f_d, b_d = linkage_step(dense, w, reads)
        assert torch.equal(_dense(sparse), dense.link) and torch.equal(sparse.precedence, dense.precedence)
        assert torch.equal(f_s, f_d) and torch.equal(b_s, b_d)
        reads = w.unsqueeze(1)  # read where the last step wrote


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5), st.integers(1, 2), st.booleans())
def test_the_hard_dnc_with_allocating_writes_is_the_same_with_the_sparse_link(seed, slots, k, deallocation):
    # g^a = 1 and no freeing: usage stays binary, so every write is one-hot on the first free slot
    # (or absent); a hard content write (g^a = 0) spreads over slots whose words tie, and there the
    # cut may apply (diffvm.memory.dnc's docstring)
    dense, sparse = DNCMemory(slots, 3, 2, deallocation=deallocation), \
        DNCMemory(slots, 3, 2, deallocation=deallocation, link_top_k=k)
    gen = torch.Generator().manual_seed(seed)
    s_dense, s_sparse = dense.initial_state(2, dtype=F64), sparse.initial_state(2, dtype=F64)
    for _ in range(2 * slots):
        raw = 3 * torch.randn(2, dense.interface_size, generator=gen, dtype=F64)
        hard = dense.harden(dense.interface_from_raw(raw))
        hard = hard._replace(g_a=torch.ones_like(hard.g_a), f=torch.zeros_like(hard.f))
        read_d, s_dense = dense(hard, s_dense)
        read_s, s_sparse = sparse(hard, s_sparse)
        assert torch.equal(read_d, read_s)
        assert torch.equal(s_dense.linkage.link, _dense(s_sparse.linkage))
        assert torch.equal(s_dense.read_weights, s_sparse.read_weights)


# --- gradients and extreme inputs ---------------------------------------------------------


@pytest.mark.parametrize("slots, k", [(4, 2), (5, 3)])
def test_sparse_linkage_gradcheck(slots, k):
    gen = torch.Generator().manual_seed(slots)
    start = _random_sparse(gen, 2, slots, k)
    w, r = _weightings(gen, 2, slots), _weightings(gen, 2, 2, slots)

    def step(value, precedence, w, r):
        new, forward, backward = sparse_linkage_step(start._replace(value=value, precedence=precedence), w, r)
        new, forward2, backward2 = sparse_linkage_step(new, w.flip(-1), r)
        return forward, backward, forward2, backward2, new.value, new.precedence

    inputs = (start.value, start.precedence, w, r)
    assert torch.autograd.gradcheck(step, tuple(x.clone().requires_grad_() for x in inputs))


@pytest.mark.parametrize("options", [{}, {"key_masking": True, "deallocation": True, "link_sharpness": True}])
def test_check_device_passes_with_the_sparse_link(options):
    # gradcheck over 4 steps from the initial state and 1e4-scaled / zero interfaces: finite
    check_device(DNCMemory(4, 3, 2, link_top_k=2, **options))


def test_saturated_writes_and_zero_weightings_stay_finite():
    slots, k = 6, 2
    state = initial_sparse_linkage(2, slots, k, dtype=F64)
    value = state.value.clone().requires_grad_()
    state = state._replace(value=value)
    leaves = []
    for t in range(5):
        w = torch.zeros(2, slots, dtype=F64)
        w[:, t % slots] = 1.0  # a full write: the factor 1 − w[i] − w[j] reaches 0
        w = w.requires_grad_()
        r = torch.zeros(2, 1, slots, dtype=F64).requires_grad_()
        leaves += [w, r]
        state, forward, backward = sparse_linkage_step(state, w, r)
        assert torch.isfinite(forward).all() and torch.isfinite(backward).all()
    grads = torch.autograd.grad(forward.sum() + backward.sum() + state.value.sum(), leaves + [value],
                                materialize_grads=True)
    assert all(torch.isfinite(g).all() for g in grads)


def test_dense_state_type_is_unchanged_without_the_option():
    assert type(DNCMemory(4, 3).initial_state(1).linkage) is LinkageState
