"""ACT's fused ponder step (diffvm.interp.kernels.act): the reference against the loop body that
diffvm.interp.halting.act ran before it used the op and a plain loop over Graves' equations, the
Triton kernel (under TRITON_INTERPRET=1 on CPU) and the custom op's backward against autograd of the
reference, on awkward shapes, in float32 and float64, with halted examples' NaN kept out."""

import pytest
import torch

from diffvm.interp.kernels import _dispatch, act_accumulate, act_accumulate_reference

IMPLS = ["reference", "triton"]
THRESHOLD = 0.99  # 1 − ε for ACT's ε = 0.01
# (B, leaf shapes after the batch): one example, primes, a scalar leaf, a leaf past one block of elements
SHAPES = [(1, [(1,)]), (3, [(), (5,)]), (7, [(3, 7), (2,)]), (5, [(1031,)])]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(batch, leaf_shapes, *, seed, dtype=torch.float64):
    """h^n, c, R, running, totals and values: every third example halted before (NaN h^n and y^n),
    halting sums spread so that some running examples cross 1 − ε at this step and some do not."""
    gen = torch.Generator().manual_seed(seed)
    running = torch.arange(batch) % 3 != 2
    halt = torch.rand(batch, generator=gen, dtype=dtype)
    cumulative = torch.rand(batch, generator=gen, dtype=dtype) * 0.9
    halt = torch.where(running, halt, float("nan"))
    remainder = torch.rand(batch, generator=gen, dtype=dtype)
    totals = [torch.randn(batch, *shape, generator=gen, dtype=dtype) for shape in leaf_shapes]
    values = [torch.randn(batch, *shape, generator=gen, dtype=dtype) for shape in leaf_shapes]
    for y in values:
        y[~running] = float("nan")
    return halt, cumulative, remainder, running, totals, values


def _loop_body(halt, cumulative, remainder, running, totals, values, last, threshold):
    """The loop body of diffvm.interp.halting.act as it was written before the op existed."""
    h = torch.where(running, halt, 0.0)
    halting = running & ((cumulative + h >= threshold) | last)
    p = torch.where(halting, 1.0 - cumulative, h)
    shape = lambda x, y: x.reshape(x.shape[0], *([1] * (y.dim() - 1)))  # noqa: E731
    new_totals = [t + shape(p, y) * torch.where(shape(running, y), y, 0.0) for t, y in zip(totals, values)]
    return p, halting, cumulative + h, torch.where(halting, 1.0 - cumulative, remainder), new_totals


def _run(fn, inputs, seed=0):
    """fn's float outputs and the gradients of a random projection of them w.r.t. every float input."""
    halt, cumulative, remainder, running, totals, values = inputs
    leaves = [x.clone().requires_grad_() for x in (halt, cumulative, remainder, *totals, *values)]
    k = len(totals)
    p, halting, cum, rem, new_totals = fn(*leaves[:3], running, leaves[3:3 + k], leaves[3 + k:])
    outputs = [p, cum, rem, *new_totals]
    gen = torch.Generator().manual_seed(seed)
    sum((y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() for y in outputs).backward()
    return [halting, *(y.detach() for y in outputs)], [x.grad for x in leaves]


def _op(impl, last=False):
    return lambda *xs: act_accumulate(*xs, last=last, threshold=THRESHOLD, impl=impl)


@pytest.mark.parametrize("last", [False, True], ids=["step", "cap"])
@pytest.mark.parametrize("impl", ["oracle", *IMPLS])
def test_step_and_gradients_match_acts_loop_body(impl, last):
    inputs = _inputs(7, [(3,), ()], seed=1)
    fn = (lambda *xs: act_accumulate_reference(*xs, last, THRESHOLD)) if impl == "oracle" else _op(impl, last)
    want, want_grads = _run(lambda *xs: _loop_body(*xs, last, THRESHOLD), inputs)
    got, grads = _run(fn, inputs)
    if impl != "triton":  # the same operations: the same values (gradients: up to the order of additions)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    for a, b in zip(got + grads, want + want_grads):
        torch.testing.assert_close(a, b, **TOLERANCES[torch.float64])
        assert not b.is_floating_point() or torch.isfinite(b).all()  # the halted examples' NaN stays out


@pytest.mark.parametrize("impl", IMPLS)
def test_step_matches_a_plain_loop_over_the_papers_equations(impl):
    halt, cumulative, remainder, running, totals, values = _inputs(6, [(2,)], seed=2)
    p, halting, cum, rem, (total,) = act_accumulate(halt, cumulative, remainder, running, totals, values,
                                                    last=False, threshold=THRESHOLD, impl=impl)
    for b in range(6):
        if not running[b]:  # halted before: adds nothing, keeps its sum and remainder
            want_p, want_halting, want_cum, want_rem = 0.0, False, cumulative[b].item(), remainder[b].item()
        else:
            h, c = halt[b].item(), cumulative[b].item()
            want_halting = c + h >= THRESHOLD  # N(t) = min{n : Σ_{j≤n} h^j ≥ 1 − ε}
            want_p = 1 - c if want_halting else h  # p^N = R = 1 − Σ_{j<N} h^j
            want_cum, want_rem = c + h, (1 - c if want_halting else remainder[b].item())
        assert halting[b].item() == want_halting
        assert [p[b].item(), cum[b].item(), rem[b].item()] == pytest.approx([want_p, want_cum, want_rem], abs=1e-12)
        want_total = [totals[0][b, i].item() + (want_p * values[0][b, i].item() if running[b] else 0.0)
                      for i in range(2)]
        assert total[b].tolist() == pytest.approx(want_total, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"B{s[0]}-leaves{s[1]}")
@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_and_every_gradient_match_autograd_of_the_reference(impl, shape, dtype):
    inputs = _inputs(*shape, seed=3, dtype=dtype)
    want, want_grads = _run(lambda *xs: act_accumulate_reference(*xs, False, THRESHOLD), inputs)
    got, grads = _run(_op(impl), inputs)
    for i, (a, b) in enumerate(zip(got + grads, want + want_grads)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m, i=i: f"output/gradient {i}: {m}")


@pytest.mark.parametrize("last", [False, True], ids=["step", "cap"])
@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl, last):
    halt, cumulative, remainder, running, totals, values = _inputs(4, [(2,)], seed=4)
    halt = torch.where(running, halt, 0.3)  # gradcheck perturbs every entry; NaN would poison its sums
    values = [torch.where(running.unsqueeze(-1), y, 0.5) for y in values]
    k = len(totals)

    def fn(halt, cumulative, remainder, *leaves):
        r = act_accumulate(halt, cumulative, remainder, running, list(leaves[:k]), list(leaves[k:]), last=last,
                           threshold=THRESHOLD, impl=impl)
        return r.weight, r.cumulative, r.remainder, *r.totals

    inputs = tuple(x.requires_grad_() for x in (halt, cumulative, remainder, *totals, *values))
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import act

    halt, cumulative, remainder, running, totals, values = _inputs(4, [(3,), ()], seed=5)
    halt = torch.where(running, halt, 0.3)  # opcheck compares gradients, which NaN inputs make NaN
    values = [torch.where(running.reshape(-1, *[1] * (y.dim() - 1)), y, 0.5) for y in values]
    leaves = [x.requires_grad_() for x in (halt, cumulative, remainder)]
    torch.library.opcheck(act._act, (*leaves, running, [x.requires_grad_() for x in totals],
                                     [x.requires_grad_() for x in values], False, THRESHOLD, triton))
    gen = torch.Generator().manual_seed(6)
    grads = [torch.randn(4, generator=gen, dtype=torch.float64) for _ in range(3)]
    grad_totals = [torch.randn(y.shape, generator=gen, dtype=torch.float64) for y in values]
    torch.library.opcheck(act._act_backward, (*grads, grad_totals, halt.detach(), cumulative.detach(), running,
                                              [y.detach() for y in values], True, THRESHOLD, triton))


@pytest.mark.parametrize("impl", IMPLS)
def test_threshold_is_compared_in_the_inputs_dtype(impl):
    """c + h̄ exactly at 1 − ε in float64 halts: the kernel must not see the threshold rounded to float32."""
    dtype = torch.float64
    cumulative = torch.tensor([0.5], dtype=dtype)
    halt = torch.tensor([THRESHOLD - 0.5], dtype=dtype)
    # float32's nearest 0.99 lies above it: a kernel comparing with it would not halt
    assert float(torch.tensor(THRESHOLD, dtype=torch.float32)) > (cumulative + halt).item() >= THRESHOLD
    r = act_accumulate(halt, cumulative, torch.zeros(1, dtype=dtype), torch.tensor([True]), [], [], last=False,
                       threshold=THRESHOLD, impl=impl)
    assert r.halting.tolist() == [True]


@pytest.mark.parametrize("impl", IMPLS)
def test_extreme_inputs_give_finite_outputs_and_gradients(impl):
    halt, cumulative, remainder, running, totals, values = _inputs(5, [(3,)], seed=7, dtype=torch.float32)
    values = [y * 1e30 for y in values]
    (p, _, cum, rem, new_totals), grads = _run(_op(impl), (halt, cumulative, remainder, running, totals, values))
    for x in [p, cum, rem, *new_totals, *grads]:
        assert torch.isfinite(x).all()


def test_bad_arguments_are_named():
    halt, cumulative, remainder, running, totals, values = _inputs(3, [(2,)], seed=8)
    with pytest.raises(ValueError, match="act_accumulate: expected halt"):
        act_accumulate(halt, cumulative, remainder, running.double(), totals, values, last=False, threshold=0.99)
    with pytest.raises(ValueError, match="act_accumulate: leaf 0"):
        act_accumulate(halt, cumulative, remainder, running, totals, [values[0][:, :1]], last=False, threshold=0.99)
    with pytest.raises(ValueError, match="1 totals for 0 values"):
        act_accumulate(halt, cumulative, remainder, running, totals, [], last=False, threshold=0.99)
    with pytest.raises(TypeError, match="act_accumulate: expected float32 or float64"):
        act_accumulate(halt, cumulative, remainder, running, totals, [values[0].float()], last=False, threshold=0.99)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
def test_full_size_triton_matches_the_reference_on_gpu():
    halt, cumulative, remainder, running, totals, values = _inputs(256, [(128, 20), (100,)], seed=9,
                                                                   dtype=torch.float32)
    inputs = (halt.cuda(), cumulative.cuda(), remainder.cuda(), running.cuda(), [x.cuda() for x in totals],
              [x.cuda() for x in values])
    want, want_grads = _run(_op("reference"), inputs)
    got, grads = _run(_op("triton"), inputs)
    for a, b in zip(got + grads, want + want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
