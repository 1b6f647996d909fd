"""Temporal linkage (diffvm.memory.linkage) against plain loops, the write order of one-hot writes,
its invariants, its gradients, and the link sharpening of Csordás & Schmidhuber."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.memory.linkage import (
    LINK_FLOOR,
    LinkageState,
    directional_weights,
    initial_linkage,
    sharpen_links,
    update_linkage,
)


def _weightings(*shape, seed, total=0.9):
    """Random nonnegative weightings over the last axis, each summing to `total`."""
    gen = torch.Generator().manual_seed(seed)
    return total * torch.softmax(torch.randn(*shape, generator=gen, dtype=torch.float64), -1)


def _random_linkage(batch, slots, seed):
    """A valid soft linkage state: built by a few soft writes from the empty one."""
    state = initial_linkage(batch, slots, dtype=torch.float64)
    for t in range(3):
        state = update_linkage(state, _weightings(batch, slots, seed=seed + t))
    return state


def test_initial_linkage_is_empty_with_batch_first_shapes():
    state = initial_linkage(3, 5, dtype=torch.float64)
    assert state.link.shape == (3, 5, 5) and state.precedence.shape == (3, 5)
    assert not state.link.any() and not state.precedence.any()


def test_link_and_precedence_update_match_a_loop():
    batch, slots = 2, 5
    old = _random_linkage(batch, slots, seed=10)
    w = _weightings(batch, slots, seed=20)
    new = update_linkage(old, w)
    for b in range(batch):
        written = sum(w[b, n].item() for n in range(slots))
        for i in range(slots):
            for j in range(slots):
                expected = 0.0 if i == j else ((1 - w[b, i].item() - w[b, j].item()) * old.link[b, i, j].item()
                                               + w[b, i].item() * old.precedence[b, j].item())
                assert new.link[b, i, j].item() == pytest.approx(expected, abs=1e-12)
            expected_p = (1 - written) * old.precedence[b, i].item() + w[b, i].item()
            assert new.precedence[b, i].item() == pytest.approx(expected_p, abs=1e-12)


def test_forward_and_backward_weightings_are_link_times_read_and_its_transpose():
    batch, heads, slots = 2, 3, 5
    link = _random_linkage(batch, slots, seed=30).link
    reads = _weightings(batch, heads, slots, seed=40)
    forward, backward = directional_weights(link, reads)
    assert forward.shape == backward.shape == (batch, heads, slots)
    for b in range(batch):
        for h in range(heads):
            for n in range(slots):
                f = sum(link[b, n, j].item() * reads[b, h, j].item() for j in range(slots))
                bw = sum(link[b, i, n].item() * reads[b, h, i].item() for i in range(slots))
                assert forward[b, h, n].item() == pytest.approx(f, abs=1e-12)
                assert backward[b, h, n].item() == pytest.approx(bw, abs=1e-12)


def _one_hot(slot, slots):
    w = torch.zeros(1, slots, dtype=torch.float64)
    w[0, slot] = 1
    return w


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), max_size=12))))
def test_one_hot_writes_link_each_slot_to_the_one_written_just_before(case):
    slots, order = case
    state = initial_linkage(1, slots, dtype=torch.float64)
    for slot in order:
        state = update_linkage(state, _one_hot(slot, slots))
    # the discrete model: for each slot's latest write, the slot written just before it, unless
    # that slot has been written again since (a rewrite takes a slot out of the list where it was)
    expected = [[0.0] * slots for _ in range(slots)]
    last = {slot: t for t, slot in enumerate(order)}
    for i, t in last.items():
        if t > 0 and order[t - 1] != i and last[order[t - 1]] == t - 1:
            expected[i][order[t - 1]] = 1.0
    assert state.link[0].tolist() == expected
    assert state.precedence[0].tolist() == (_one_hot(order[-1], slots)[0].tolist() if order else [0.0] * slots)


def test_forward_mode_steps_from_the_kth_written_slot_to_the_next():
    slots, order = 6, [3, 0, 5, 1, 4]
    state = initial_linkage(1, slots, dtype=torch.float64)
    for slot in order:
        state = update_linkage(state, _one_hot(slot, slots))
    for k in range(len(order)):
        forward, backward = directional_weights(state.link, _one_hot(order[k], slots).unsqueeze(1))
        after = _one_hot(order[k + 1], slots) if k + 1 < len(order) else torch.zeros(1, slots, dtype=torch.float64)
        before = _one_hot(order[k - 1], slots) if k > 0 else torch.zeros(1, slots, dtype=torch.float64)
        assert torch.equal(forward[:, 0], after) and torch.equal(backward[:, 0], before)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 8), st.sampled_from([1.0, 10.0, 1e3]))
def test_link_stays_a_substochastic_matrix_with_zero_diagonal(seed, slots, steps, sharpness):
    gen = torch.Generator().manual_seed(seed)
    state = initial_linkage(2, slots, dtype=torch.float64)
    for _ in range(steps):
        gate = torch.rand(2, 1, generator=gen, dtype=torch.float64)
        w = gate * torch.softmax(sharpness * torch.randn(2, slots, generator=gen, dtype=torch.float64), -1)
        state = update_linkage(state, w)
        link, p = state
        assert ((link >= 0) & (link <= 1)).all()
        assert not link.diagonal(dim1=-2, dim2=-1).any()
        assert (link.sum(-1) <= 1 + 1e-12).all() and (link.sum(-2) <= 1 + 1e-12).all()
        assert (p >= 0).all() and (p.sum(-1) <= 1 + 1e-12).all()


def test_linkage_gradcheck():
    old = _random_linkage(2, 4, seed=50)

    def step(link, precedence, w, reads):
        new = update_linkage(LinkageState(link, precedence), w)
        return (*directional_weights(new.link, reads), new.precedence)

    inputs = (old.link, old.precedence, _weightings(2, 4, seed=60), _weightings(2, 2, 4, seed=70))
    assert torch.autograd.gradcheck(step, tuple(x.clone().requires_grad_() for x in inputs))


# --- sharpening (Csordás & Schmidhuber 2019, §3.3) ----------------------------------------


def test_sharpening_matches_the_papers_quotient_in_a_loop():
    d, s = _weightings(2, 3, 5, seed=80, total=0.7), 1 + 3 * torch.rand(2, 3, dtype=torch.float64)
    got = sharpen_links(d, s)
    for b in range(2):
        for h in range(3):
            total = sum(d[b, h, j].item() ** s[b, h].item() for j in range(5))
            for i in range(5):
                assert got[b, h, i].item() == pytest.approx(d[b, h, i].item() ** s[b, h].item() / total, rel=1e-12)


def test_sharpening_keeps_one_hot_and_zero_weightings_exactly():
    d = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    assert torch.equal(sharpen_links(d, torch.tensor([[3.7, 1.0]], dtype=torch.float64)), d)


def test_sharpening_with_a_huge_exponent_gives_the_argmax():
    d = torch.tensor([[[0.2, 0.3, 0.1]]])
    torch.testing.assert_close(sharpen_links(d, torch.tensor([[1e4]])), torch.tensor([[[0.0, 1.0, 0.0]]]))


def test_sharpening_fades_link_noise_below_the_floor_continuously():
    shape = torch.tensor([[[0.5, 0.25, 0.25]]], dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    # largest entry at the floor: still the paper's quotient, a full distribution
    torch.testing.assert_close(sharpen_links(2 * LINK_FLOOR * shape, one), shape)
    # a tenth of that: (d / floor)^s, a tenth of the mass, going to 0 with d
    torch.testing.assert_close(sharpen_links(0.2 * LINK_FLOOR * shape, one), 0.2 * shape)


@pytest.mark.parametrize("exponent", [1.0, 1.5, 1e4])
def test_sharpening_gradients_are_finite_at_zero_and_one_hot_weightings(exponent):
    d = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]], dtype=torch.float64, requires_grad=True)
    s = torch.full((1, 3), exponent, dtype=torch.float64, requires_grad=True)
    out = sharpen_links(d, s)
    (out * torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)).sum().backward()  # weights ≤ 1
    assert torch.isfinite(d.grad).all() and torch.isfinite(s.grad).all()
    assert d.grad.abs().max() <= exponent / LINK_FLOOR


def test_sharpening_gradcheck():
    d, s = _weightings(2, 3, 5, seed=90, total=0.6), 1 + torch.rand(2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(sharpen_links, (d.requires_grad_(), s.requires_grad_()))


@pytest.mark.parametrize("slots", [1, 3, 5])
def test_the_hand_written_link_gradient_passes_gradcheck_even_with_a_nonzero_diagonal(slots):
    gen = torch.Generator().manual_seed(slots)
    link = 0.3 * torch.rand(2, slots, slots, generator=gen, dtype=torch.float64)
    link.diagonal(dim1=-2, dim2=-1).fill_(0.2)  # never produced by update_linkage, but a valid input
    w = 0.9 * torch.softmax(torch.randn(2, slots, generator=gen, dtype=torch.float64), -1)
    p = 0.8 * torch.softmax(torch.randn(2, slots, generator=gen, dtype=torch.float64), -1)
    inputs = tuple(x.requires_grad_() for x in (link, w, p))
    assert torch.autograd.gradcheck(lambda L, w, p: update_linkage(LinkageState(L, p), w).link, inputs)
