import math
from typing import NamedTuple

import pytest
import torch

from diffvm.interp.halting import (
    ACT_EPSILON,
    ACT_HALTING_BIAS,
    act,
    geometric_prior,
    halting_unit,
    ponder,
    ponder_sample,
    pondernet_loss,
)

DT = torch.float64


# --- step functions ---------------------------------------------------------------------------
class Counted(NamedTuple):
    s: torch.Tensor  # (B, 2)
    calls: int


def _fixed(halts, outputs=None):
    """A step function returning predetermined h^n = halts[:, n−1] (B, M); y^n = outputs[:, n−1]
    (default n) as (B, 1); state s^n = n · [1, −1] per example and a call count."""
    batch = halts.shape[0]

    def step(n, state):
        y = outputs[:, n - 1 : n] if outputs is not None else torch.full((batch, 1), float(n), dtype=halts.dtype)
        s = torch.tensor([1.0, -1.0], dtype=halts.dtype).expand(batch, 2) * n
        return y, halts[:, n - 1], Counted(s, state.calls + 1)

    return step, Counted(torch.zeros(batch, 2, dtype=halts.dtype), 0)


class RNNParams(NamedTuple):
    W: torch.Tensor  # (H, H)
    U: torch.Tensor  # (X, H)
    first: torch.Tensor  # (H,) added at the first ponder step (Graves' first-step flag)
    V: torch.Tensor  # (H, 2)
    w_h: torch.Tensor  # (H,)
    b_h: torch.Tensor  # ()


class RNNState(NamedTuple):
    s: torch.Tensor  # (B, H)
    calls: int


def _rnn_params(seed=0, hidden=3, inputs=2):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=DT)
    bias = torch.tensor(-1.0, dtype=DT)  # σ(−1) ≈ 0.27: a few ponder steps each
    return RNNParams(r(hidden, hidden), r(inputs, hidden), r(hidden), r(hidden, 2), 2 * r(hidden), bias)


def _rnn(params, x):
    """A tanh RNN cell pondering on input x (B, X): output (B, 2), halting σ(w_h·s + b_h)."""

    def step(n, state):
        s = torch.tanh(state.s @ params.W + x @ params.U + (params.first if n == 1 else 0.0))
        return s @ params.V, torch.sigmoid(s @ params.w_h + params.b_h), RNNState(s, state.calls + 1)

    return step


def _rnn_inputs(batch, seed=1, hidden=3, inputs=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, inputs, generator=g, dtype=DT), 0.5 * torch.randn(batch, hidden, generator=g, dtype=DT)


def _act_plain(params, x, s0, max_steps, epsilon):
    """ACT for one example (x (X,), s0 (H,)) as a plain loop over Graves' equations."""
    s, hs, ys, states = s0, [], [], []
    for n in range(1, max_steps + 1):
        s = torch.tanh(s @ params.W + x @ params.U + (params.first if n == 1 else 0.0))
        ys.append(s @ params.V)
        states.append(s)
        hs.append(torch.sigmoid(s @ params.w_h + params.b_h))
        if sum(h.item() for h in hs) >= 1 - epsilon:
            break
    N = len(hs)  # the first n with Σ h ≥ 1 − ε, else M
    R = 1 - sum(hs[: N - 1]) if N > 1 else torch.tensor(1.0, dtype=DT)
    p = [*hs[: N - 1], R]
    return sum(pn * y for pn, y in zip(p, ys)), sum(pn * st for pn, st in zip(p, states)), N, R


# --- ACT --------------------------------------------------------------------------------------
def test_act_weights_remainder_steps_cost_and_output_match_hand_computation():
    halts = torch.tensor([[0.3, 0.5, 0.4, 0.9], [0.995, 0.2, 0.2, 0.2], [0.6, 0.395, 0.2, 0.2]], dtype=DT)
    step, s0 = _fixed(halts)
    r = act(step, s0, max_steps=4)
    # By hand, ε = 0.01 so the threshold is 0.99; y^n = n:
    # example 0: cumulative 0.3, 0.8, 1.2 -> N = 3, R = 1 − 0.8 = 0.2, p = (0.3, 0.5, 0.2),
    #            y = 0.3·1 + 0.5·2 + 0.2·3 = 1.9, ρ = 3.2;
    # example 1: 0.995 ≥ 0.99 at once -> N = 1, R = 1, p = (1, 0, 0), y = 1, ρ = 2;
    # example 2: cumulative 0.6, 0.995 -> N = 2, R = 0.4, p = (0.6, 0.4, 0), y = 0.6 + 0.8 = 1.4, ρ = 2.4.
    # The loop stops after step 3, when example 0 halts.
    torch.testing.assert_close(r.weights, torch.tensor([[0.3, 0.5, 0.2], [1, 0, 0], [0.6, 0.4, 0]], dtype=DT))
    assert r.steps.tolist() == [3, 1, 2] and r.steps.dtype == torch.long
    torch.testing.assert_close(r.remainder, torch.tensor([0.2, 1.0, 0.4], dtype=DT))
    torch.testing.assert_close(r.ponder_cost, torch.tensor([3.2, 2.0, 2.4], dtype=DT))
    torch.testing.assert_close(r.output, torch.tensor([[1.9], [1.0], [1.4]], dtype=DT))
    # the state's mean field: s^n = n·(1, −1), so Σ p^n s^n = y·(1, −1)
    torch.testing.assert_close(r.state.s, torch.tensor([[1.9, -1.9], [1.0, -1.0], [1.4, -1.4]], dtype=DT))


def test_act_at_the_cap_halts_at_max_steps_with_the_rest_as_remainder():
    step, s0 = _fixed(torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]], dtype=DT))
    r = act(step, s0, max_steps=3)
    assert r.steps.tolist() == [3, 3]
    torch.testing.assert_close(r.remainder, torch.tensor([1.0, 0.8], dtype=DT))  # 1 − Σ_{n<3} h^n
    torch.testing.assert_close(r.weights, torch.tensor([[0, 0, 1.0], [0.1, 0.1, 0.8]], dtype=DT))
    torch.testing.assert_close(r.ponder_cost, torch.tensor([4.0, 3.8], dtype=DT))
    torch.testing.assert_close(r.output, torch.tensor([[3.0], [0.1 + 0.2 + 2.4]], dtype=DT))


def test_act_with_one_step_or_certain_halting_takes_the_first_step_whole():
    step, s0 = _fixed(torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=DT))
    r = act(step, s0, max_steps=1)
    assert r.steps.tolist() == [1, 1] and r.weights.shape == (2, 1)
    torch.testing.assert_close(r.remainder, torch.ones(2, dtype=DT))
    r = act(step, s0, max_steps=2)
    assert r.steps.tolist() == [1, 2]
    assert torch.isfinite(r.output).all() and torch.isfinite(r.ponder_cost).all()


def test_act_ponder_cost_gradient_is_minus_one_before_n_and_zero_from_n_on():
    halts = torch.tensor([[0.3, 0.5, 0.4, 0.9], [0.995, 0.2, 0.2, 0.2], [0.6, 0.395, 0.2, 0.2]], dtype=DT)
    halts.requires_grad_(True)
    step, s0 = _fixed(halts)
    (grad,) = torch.autograd.grad(act(step, s0, max_steps=4).ponder_cost.sum(), halts)
    # N = 3, 1, 2: dρ/dh^n = −1 for n < N; h^N only picks N; steps after N do not count.
    expected = torch.tensor([[-1, -1, 0, 0], [0, 0, 0, 0], [-1, 0, 0, 0]], dtype=DT)
    torch.testing.assert_close(grad, expected)


def test_act_output_gradient_reaches_halting_units_before_n_only():
    halts = torch.tensor([[0.3, 0.5, 0.4, 0.9], [0.995, 0.2, 0.2, 0.2], [0.6, 0.395, 0.2, 0.2]], dtype=DT)
    halts.requires_grad_(True)
    step, s0 = _fixed(halts)
    (grad,) = torch.autograd.grad(act(step, s0, max_steps=4).output.sum(), halts)
    # y = Σ_{n<N} h^n y^n + (1 − Σ_{n<N} h^n) y^N, so dy/dh^n = y^n − y^N for n < N, 0 from N on.
    expected = torch.tensor([[1 - 3, 2 - 3, 0, 0], [0, 0, 0, 0], [1 - 2, 0, 0, 0]], dtype=DT)
    torch.testing.assert_close(grad, expected)


def test_act_rnn_matches_a_plain_loop_over_the_equations():
    params = _rnn_params()
    x, s0 = _rnn_inputs(5)
    r = act(_rnn(params, x), RNNState(s0, 0), max_steps=6)
    for b in range(5):
        y, s, N, R = _act_plain(params, x[b], s0[b], 6, ACT_EPSILON)
        assert r.steps[b].item() == N
        torch.testing.assert_close(r.output[b], y)
        torch.testing.assert_close(r.state.s[b], s)
        torch.testing.assert_close(r.remainder[b], R)
        torch.testing.assert_close(r.ponder_cost[b], N + R)


def test_act_batch_gives_each_example_its_result_and_gradients_alone():
    params = _rnn_params()
    x, s0 = _rnn_inputs(5)
    x.requires_grad_(True)
    s0.requires_grad_(True)
    leaves = [x, s0, *params]
    for t in params:
        t.requires_grad_(True)

    def loss(r):
        return (r.output * torch.tensor([1.0, -2.0], dtype=DT)).sum() + r.state.s.sum() + 0.1 * r.ponder_cost.sum()

    r = act(_rnn(params, x), RNNState(s0, 0), max_steps=6)
    assert len(set(r.steps.tolist())) > 1, "the examples should halt at different steps"
    grads = torch.autograd.grad(loss(r), leaves)
    param_sum = [torch.zeros_like(t) for t in params]
    for b in range(5):
        xb, sb = x[b : b + 1].detach().requires_grad_(True), s0[b : b + 1].detach().requires_grad_(True)
        a = act(_rnn(params, xb), RNNState(sb, 0), max_steps=6)
        torch.testing.assert_close(r.output[b : b + 1], a.output)
        torch.testing.assert_close(r.state.s[b : b + 1], a.state.s)
        assert r.steps[b] == a.steps[0]
        torch.testing.assert_close(r.remainder[b : b + 1], a.remainder)
        torch.testing.assert_close(r.ponder_cost[b : b + 1], a.ponder_cost)
        n_run = a.weights.shape[1]
        torch.testing.assert_close(r.weights[b : b + 1, :n_run], a.weights)
        assert (r.weights[b, n_run:] == 0).all()
        gx, gs, *gp = torch.autograd.grad(loss(a), [xb, sb, *params])
        torch.testing.assert_close(grads[0][b : b + 1], gx)
        torch.testing.assert_close(grads[1][b : b + 1], gs)
        param_sum = [t + g for t, g in zip(param_sum, gp)]
    for g, expected in zip(grads[2:], param_sum):
        torch.testing.assert_close(g, expected)


def test_act_gradcheck_float64_through_output_and_ponder_cost():
    params = _rnn_params()
    x, s0 = _rnn_inputs(3)
    # No tie at the threshold: every cumulative halting sum Σ_{n≤n'} h^n, n' ≤ N, stays well away
    # from 1 − ε, so the finite differences of gradcheck cannot change N.
    halts, step = [], _rnn(params, x)

    def recording(n, state):
        y, h, state = step(n, state)
        halts.append(h.detach())
        return y, h, state

    r = act(recording, RNNState(s0, 0), max_steps=6)
    cum = torch.stack(halts, 1).cumsum(1)  # (B, n_run)
    upto_n = torch.arange(1, cum.shape[1] + 1) <= r.steps[:, None]
    assert ((cum - (1 - ACT_EPSILON)).abs()[upto_n] > 1e-3).all()

    def f(x, s0, W, w_h):
        p = params._replace(W=W, w_h=w_h)
        a = act(_rnn(p, x), RNNState(s0, 0), max_steps=6)
        return a.output, a.ponder_cost, a.state.s

    inputs = [t.clone().requires_grad_(True) for t in (x, s0, params.W, params.w_h)]
    assert torch.autograd.gradcheck(f, inputs)


def test_act_nan_after_an_example_halts_does_not_leak():
    halts = torch.tensor([[0.995, 0.2, 0.2], [0.3, 0.5, 0.4]], dtype=DT, requires_grad=True)
    w = torch.tensor([2.0, 3.0], dtype=DT, requires_grad=True)
    fed = []

    def step(n, state):
        fed.append(state.s.detach().clone())
        y, h, s = (w * n).unsqueeze(1), halts[:, n - 1], state.s + (w * n).unsqueeze(1)  # (B, 1), (B,), (B, 2)
        if n > 1:  # example 0 halted at step 1: everything it returns afterwards is NaN
            dead = torch.tensor([True, False])
            y, s = torch.where(dead[:, None], float("nan"), y), torch.where(dead[:, None], float("nan"), s)
            h = torch.where(dead, float("nan"), h)
        return y, h, Counted(s, state.calls + 1)

    r = act(step, Counted(torch.zeros(2, 2, dtype=DT), 0), max_steps=3)
    for t in (r.output, r.state.s, r.ponder_cost, r.remainder, r.weights):
        assert torch.isfinite(t).all()
    gw, gh = torch.autograd.grad(r.output.sum() + r.ponder_cost.sum() + r.state.s.sum(), (w, halts))
    assert r.steps.tolist() == [1, 3]
    # example 0 ran steps 2 and 3 from the state it halted with (s^1 = w_0 = 2), not from NaN
    torch.testing.assert_close(fed[1][0], torch.tensor([2.0, 2.0], dtype=DT))
    torch.testing.assert_close(fed[2][0], torch.tensor([2.0, 2.0], dtype=DT))
    # By hand. Example 0: N = 1, y = w_0, s = s^1 = w_0 in both entries: dL/dw_0 = 1 + 2 = 3.
    # Example 1: N = 3, p = (0.3, 0.5, 0.2); y^n = w_1·n, s^n = w_1·(1, 3, 6)[n] in both entries:
    # y = 1.9·w_1 = 5.7, s = 3.0·w_1, dL/dw_1 = 1.9 + 2·3.0 = 7.9;
    # dL/dh^n = (y^n − y^N) + (−1 from ρ) + 2·(s^n − s^N) for n < N: (−6 − 1 − 30, −3 − 1 − 18, 0).
    torch.testing.assert_close(r.output, torch.tensor([[2.0], [5.7]], dtype=DT))
    torch.testing.assert_close(gw, torch.tensor([3.0, 7.9], dtype=DT))
    torch.testing.assert_close(gh, torch.tensor([[0.0, 0, 0], [-37, -22, 0]], dtype=DT))


def test_act_non_float_leaves_come_from_the_last_step_run():
    halts = torch.tensor([[0.995, 0.2, 0.2], [0.3, 0.5, 0.4]], dtype=DT)

    def step(n, state):
        return (torch.full((2, 1), float(n), dtype=DT), halts[:, n - 1],
                {"s": state["s"] + 1, "calls": state["calls"] + 1, "idx": state["idx"] + n})

    s0 = {"s": torch.zeros(2, dtype=DT), "calls": 0, "idx": torch.zeros(2, dtype=torch.long)}
    r = act(step, s0, max_steps=5)
    assert r.state["calls"] == 3  # three ponder steps ran, though example 0 halted after one
    assert r.state["idx"].tolist() == [6, 6] and r.state["idx"].dtype == torch.long
    torch.testing.assert_close(r.state["s"], torch.tensor([1.0, 0.3 * 1 + 0.5 * 2 + 0.2 * 3], dtype=DT))


def test_act_rejects_bad_arguments_naming_them():
    step, s0 = _fixed(torch.full((2, 3), 0.5, dtype=DT))
    with pytest.raises(ValueError, match="max_steps"):
        act(step, s0, max_steps=0)
    with pytest.raises(ValueError, match="max_steps"):
        act(step, s0, max_steps=2.0)
    for eps in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="epsilon"):
            act(step, s0, max_steps=3, epsilon=eps)

    def bad_halt_at_2(n, state):
        y, h, state = step(n, state)
        return y, (h if n == 1 else h.unsqueeze(1)), state

    with pytest.raises(ValueError, match=r"step 2 .*halt of shape \(2, 1\)"):
        act(bad_halt_at_2, s0, max_steps=3)


def test_halting_unit_starts_with_grave_bias():
    unit = halting_unit(7)
    assert unit.weight.shape == (1, 7)
    assert unit.bias.tolist() == [ACT_HALTING_BIAS] == [1.0]


# --- PonderNet --------------------------------------------------------------------------------
def _lambdas(batch, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, steps, generator=g, dtype=DT)


def test_ponder_weights_match_a_plain_loop_and_sum_to_one():
    lam = _lambdas(3, 5)
    outs = torch.randn(3, 5, dtype=DT, generator=torch.Generator().manual_seed(1))
    step, s0 = _fixed(lam, outs)
    r = ponder(step, s0, max_steps=5)
    for b in range(3):
        p, not_halted = [], 1.0
        for n in range(5):
            p.append(lam[b, n].item() * not_halted if n < 4 else not_halted)  # p^M: the rest
            not_halted *= 1 - lam[b, n].item()
        torch.testing.assert_close(r.weights[b], torch.tensor(p, dtype=DT))
        expected_steps = sum((n + 1) * q for n, q in enumerate(p))
        torch.testing.assert_close(r.expected_steps[b], torch.tensor(expected_steps, dtype=DT))
    torch.testing.assert_close(r.weights.sum(1), torch.ones(3, dtype=DT))
    assert r.outputs.shape == (3, 5, 1)
    torch.testing.assert_close(r.outputs[:, :, 0], outs)
    torch.testing.assert_close(r.state.s[:, 0], r.expected_steps)  # s^n = n·(1, −1)
    assert r.state.calls == 5


def test_ponder_hand_computation_and_no_gradient_to_the_last_lambda():
    lam = torch.full((1, 3), 0.5, dtype=DT, requires_grad=True)
    step, s0 = _fixed(lam)
    r = ponder(step, s0, max_steps=3)
    # p = 0.5, 0.5·0.5, and the rest 0.25 at M = 3; E[n] = 0.5 + 0.5 + 0.75 = 1.75
    torch.testing.assert_close(r.weights, torch.tensor([[0.5, 0.25, 0.25]], dtype=DT))
    torch.testing.assert_close(r.expected_steps, torch.tensor([1.75], dtype=DT))
    (g,) = torch.autograd.grad(r.expected_steps.sum(), lam)
    assert g[0, 2] == 0 and (g[0, :2] != 0).all()


def test_ponder_gradcheck_float64():
    lam = _lambdas(2, 4).requires_grad_(True)
    outs = torch.randn(2, 4, dtype=DT).requires_grad_(True)

    def f(lam, outs):
        r = ponder(_fixed(lam, outs)[0], _fixed(lam)[1], max_steps=4)
        return r.weights, r.expected_steps, r.outputs, r.state.s

    assert torch.autograd.gradcheck(f, (lam, outs))


def test_ponder_extreme_lambdas_are_finite():
    lam = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=DT)
    r = ponder(*_fixed(lam), max_steps=3)
    torch.testing.assert_close(r.weights, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=DT))
    assert torch.isfinite(r.expected_steps).all()


def test_geometric_prior_is_the_truncated_renormalised_geometric():
    # λ_p = 1/2, M = 3: (1/2, 1/4, 1/8) / (7/8) = (4/7, 2/7, 1/7)
    torch.testing.assert_close(geometric_prior(0.5, 3, dtype=DT), torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=DT))
    for lp, m in [(0.2, 10), (0.9, 4), (0.05, 30)]:
        prior = geometric_prior(lp, m, dtype=DT)
        z = 1 - (1 - lp) ** m
        expected = [lp * (1 - lp) ** (n - 1) / z for n in range(1, m + 1)]
        torch.testing.assert_close(prior, torch.tensor(expected, dtype=DT))
        torch.testing.assert_close(prior.sum(), torch.tensor(1.0, dtype=DT))
    torch.testing.assert_close(geometric_prior(1.0, 3, dtype=DT), torch.tensor([1.0, 0, 0], dtype=DT))


def test_pondernet_loss_matches_hand_computation():
    weights = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]], dtype=DT)
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=DT)
    loss, info = pondernet_loss(losses, weights, lambda_p=0.5, beta=0.1)
    # prior (4/7, 2/7, 1/7); reconstruction: (0.5 + 0.5 + 0.75 + 4) / 2 = 2.875
    kl0 = 0.5 * math.log(0.5 / (4 / 7)) + 0.25 * math.log(0.25 / (2 / 7)) + 0.25 * math.log(0.25 / (1 / 7))
    kl1 = math.log(1 / (4 / 7))  # the zero weights add 0 · log 0 = 0
    assert info["reconstruction"] == pytest.approx(2.875)
    assert info["kl"] == pytest.approx((kl0 + kl1) / 2)
    assert loss.item() == pytest.approx(2.875 + 0.1 * (kl0 + kl1) / 2)


def test_pondernet_loss_is_finite_with_zero_weights_and_an_underflowing_prior():
    # float32 prior of λ_p = 0.9 over 60 steps: 0.1^59 underflows to 0
    weights = torch.zeros(2, 60)
    weights[0, 0] = 1.0
    weights[1, 59] = 1.0
    weights.requires_grad_(True)
    losses = torch.rand(2, 60, generator=torch.Generator().manual_seed(0))
    loss, info = pondernet_loss(losses, weights, lambda_p=0.9, beta=1.0)
    (g,) = torch.autograd.grad(loss, weights)
    assert math.isfinite(loss.item()) and math.isfinite(info["kl"]) and torch.isfinite(g).all()


def test_pondernet_loss_gradcheck_float64():
    weights = torch.softmax(torch.randn(2, 4, dtype=DT), -1).requires_grad_(True)
    losses = torch.rand(2, 4, dtype=DT).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w, losses: pondernet_loss(losses, w, 0.3, 0.5)[0], (weights, losses))


def test_ponder_sample_is_reproducible_with_a_seeded_generator():
    lam = _lambdas(50, 6, seed=3)
    runs = [ponder_sample(*_fixed(lam), max_steps=6, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0].steps, runs[1].steps)
    assert len(set(runs[0].steps.tolist())) > 2


def test_ponder_sample_halts_at_one_when_certain_and_at_m_when_never():
    lam = torch.tensor([[1.0, 0.5, 0.5], [0.0, 0.0, 0.0]], dtype=DT)
    r = ponder_sample(*_fixed(lam), max_steps=3, generator=torch.Generator().manual_seed(0))
    assert r.steps.tolist() == [1, 3]
    # output and float state are those of the halting step (y^n = n, s^n = n·(1, −1))
    torch.testing.assert_close(r.output, torch.tensor([[1.0], [3.0]], dtype=DT))
    torch.testing.assert_close(r.state.s, torch.tensor([[1.0, -1.0], [3.0, -3.0]], dtype=DT))
    assert r.state.calls == 3


def test_ponder_sample_frequencies_follow_the_halting_distribution():
    lam = torch.tensor([0.3, 0.5, 0.2, 0.6], dtype=DT).expand(4000, 4)
    r = ponder_sample(*_fixed(lam), max_steps=4, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(r.steps - 1, minlength=4).to(DT) / 4000
    # p = 0.3, 0.7·0.5, 0.35·0.2, the rest 0.28; the standard error is below 0.008
    torch.testing.assert_close(freq, torch.tensor([0.3, 0.35, 0.07, 0.28], dtype=DT), atol=0.03, rtol=0)
    torch.testing.assert_close(r.output[:, 0], r.steps.to(DT))


def test_ponder_and_sampling_reject_bad_arguments_naming_them():
    step, s0 = _fixed(torch.full((2, 3), 0.5, dtype=DT))
    with pytest.raises(ValueError, match="max_steps"):
        ponder(step, s0, max_steps=0)
    with pytest.raises(ValueError, match="max_steps"):
        ponder_sample(step, s0, max_steps=-1, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        ponder_sample(step, s0, max_steps=3, generator=None)
    for lp in (0.0, 1.5):
        with pytest.raises(ValueError, match="lambda_p"):
            geometric_prior(lp, 3)
    w = torch.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="beta"):
        pondernet_loss(torch.ones(2, 3), w, 0.5, -1.0)
    with pytest.raises(ValueError, match="step_losses"):
        pondernet_loss(torch.ones(2, 4), w, 0.5, 0.1)

    def bad(n, state):
        y, h, state = step(n, state)
        return y, h[:1], state

    with pytest.raises(ValueError, match=r"step 1 .*halt of shape \(1,\)"):
        ponder(bad, s0, max_steps=3)
