"""The fused linkage step (diffvm.interp.kernels.linkage): the reference against the DNC's own
linkage and a plain loop, the Triton kernel (under TRITON_INTERPRET=1 on CPU) and the custom op's
backward against autograd of the reference, on awkward shapes, in float32 and float64."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import outputs_and_gradients

from diffvm.interp.kernels import _dispatch, link_step_reference, linkage_step
from diffvm.memory.linkage import LinkageState, directional_weights, update_linkage

IMPLS = ["reference", "triton"]
# (B, N, R): a single slot, primes, one N past a row block and a column block of the kernel
SHAPES = [(1, 1, 1), (2, 5, 3), (3, 67, 2), (1, 13, 4)]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(batch, slots, heads, *, seed, dtype=torch.float64):
    """L_{t−1} with a nonzero diagonal (a valid input, never produced by a step), w, p, r."""
    gen = torch.Generator().manual_seed(seed)
    simplex = lambda *shape, total: total * torch.softmax(torch.randn(*shape, generator=gen, dtype=dtype), -1)
    link = 0.3 * torch.rand(batch, slots, slots, generator=gen, dtype=dtype)
    return link, simplex(batch, slots, total=0.9), simplex(batch, slots, total=0.8), simplex(batch, heads, slots,
                                                                                                total=1.0)


def _step(impl, link, w, p, r):
    """L_t, p_t, f, b by `linkage_step` (impl) or, for "oracle", by autograd of the reference."""
    if impl == "oracle":
        new_link, forward, backward = link_step_reference(link, w, p, r)
        return new_link, (1 - w.sum(-1, keepdim=True)) * p + w, forward, backward
    state, forward, backward = linkage_step(LinkageState(link, p), w, r, impl=impl)
    return state.link, state.precedence, forward, backward


def _outputs_and_gradients(impl, inputs, seed=0):
    return outputs_and_gradients(lambda *xs: _step(impl, *xs), inputs, seed)


def test_reference_is_the_dnc_linkage_update_and_directional_weights_to_the_bit():
    link, w, p, r = _inputs(3, 7, 2, seed=1)
    new_link, forward, backward = link_step_reference(link, w, p, r)
    state = update_linkage(LinkageState(link, p), w)
    expected_forward, expected_backward = directional_weights(state.link, r)
    assert torch.equal(new_link, state.link)
    assert torch.equal(forward, expected_forward) and torch.equal(backward, expected_backward)
    ours, _ = _outputs_and_gradients("reference", (link, w, p, r))
    assert torch.equal(ours[1], state.precedence)


@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_and_gradients_match_the_dnc_linkage_modules(impl):
    inputs = _inputs(2, 6, 3, seed=2)
    leaves = [x.clone().requires_grad_() for x in inputs]
    link, w, p, r = leaves
    state = update_linkage(LinkageState(link, p), w)
    expected = [state.link, state.precedence, *directional_weights(state.link, r)]
    gen = torch.Generator().manual_seed(0)
    sum((y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() for y in expected).backward()
    outputs, grads = _outputs_and_gradients(impl, inputs)
    for got, want in zip(outputs + grads, [y.detach() for y in expected] + [x.grad for x in leaves]):
        torch.testing.assert_close(got, want, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("impl", IMPLS)
def test_step_matches_a_plain_loop_over_the_papers_equations(impl):
    batch, slots, heads = 2, 4, 2
    link, w, p, r = _inputs(batch, slots, heads, seed=3)
    with torch.no_grad():
        new_link, new_p, forward, backward = _step(impl, link, w, p, r)
    for b in range(batch):
        expected = [[0.0 if i == j else (1 - w[b, i].item() - w[b, j].item()) * link[b, i, j].item()
                     + w[b, i].item() * p[b, j].item() for j in range(slots)] for i in range(slots)]
        for i in range(slots):
            assert new_link[b, i].tolist() == pytest.approx(expected[i], abs=1e-12)
        written = sum(w[b].tolist())
        assert new_p[b].tolist() == pytest.approx([(1 - written) * p[b, j].item() + w[b, j].item()
                                                   for j in range(slots)], abs=1e-12)
        for h in range(heads):
            f = [sum(expected[i][j] * r[b, h, j].item() for j in range(slots)) for i in range(slots)]
            bw = [sum(expected[i][j] * r[b, h, i].item() for i in range(slots)) for j in range(slots)]
            assert forward[b, h].tolist() == pytest.approx(f, abs=1e-12)
            assert backward[b, h].tolist() == pytest.approx(bw, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-N{}-R{}".format(*s))
@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_and_every_gradient_match_autograd_of_the_reference(impl, shape, dtype):
    inputs = _inputs(*shape, seed=4, dtype=dtype)
    want_outputs, want_grads = _outputs_and_gradients("oracle", inputs)
    outputs, grads = _outputs_and_gradients(impl, inputs)
    for name, got, want in zip(["L_t", "p_t", "f", "b", "dL", "dw", "dp", "dr"], outputs + grads,
                               want_outputs + want_grads):
        assert got.dtype == dtype and got.shape == want.shape, name
        torch.testing.assert_close(got, want, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl):
    inputs = tuple(x.requires_grad_() for x in _inputs(1, 3, 2, seed=5))
    assert torch.autograd.gradcheck(lambda *xs: _step(impl, *xs), inputs)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_of_a_step_whose_new_link_is_unused(impl):
    """The last step of an episode: only f and b reach the loss, ∂ℓ/∂L_t arrives as zeros."""
    inputs = _inputs(2, 5, 2, seed=6)
    grads = {}
    for name in ("oracle", impl):
        leaves = [x.clone().requires_grad_() for x in inputs]
        _, _, forward, backward = _step(name, *leaves)
        (forward.sum() + 2 * backward.sum()).backward()
        grads[name] = [x.grad for x in leaves]
    for got, want in zip(grads[impl], grads["oracle"]):
        torch.testing.assert_close(got, want, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import linkage

    link, w, p, r = _inputs(2, 5, 3, seed=7)
    torch.library.opcheck(linkage._link_step, (link.requires_grad_(), w.requires_grad_(), p, r, triton))
    gen = torch.Generator().manual_seed(8)
    grads = [torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in (link, r, r)]
    torch.library.opcheck(linkage._link_step_backward, (*grads, link.detach(), w.detach(), p, r, triton))


def test_backward_saves_no_link_matrix_but_the_previous_one():
    """BPTT memory: the only (B, N, N) tensor kept for the backward is L_{t−1} itself."""
    link, w, p, r = (x.requires_grad_() for x in _inputs(2, 6, 2, seed=9))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: saved.append(x) or x, lambda x: x):
        linkage_step(LinkageState(link, p), w, r, impl="reference")
    square = [x for x in saved if x.shape == link.shape]
    assert len(square) == 1 and square[0].data_ptr() == link.data_ptr()


def _one_hot(slot, slots):
    return torch.nn.functional.one_hot(torch.tensor([slot]), slots).double()  # (1, N)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=1,
                                                                          max_size=6))),
       st.sampled_from(IMPLS))
def test_one_hot_writes_and_reads_step_along_the_write_order_as_the_hard_list(case, impl):
    """Soft = hard: with one-hot writes, the read of a slot steps to the slot written right after
    it (forward) and right before it (backward), in a plain list of the writes, unless a rewrite
    took one of them out of the list."""
    slots, order = case
    state = LinkageState(torch.zeros(1, slots, slots, dtype=torch.float64), torch.zeros(1, slots, dtype=torch.float64))
    reads = torch.eye(slots, dtype=torch.float64).unsqueeze(0)  # (1, N, N): head h reads slot h
    for t, slot in enumerate(order):
        state, forward, backward = linkage_step(state, _one_hot(slot, slots), reads, impl=impl)
        history = order[:t + 1]
        last = {s: k for k, s in enumerate(history)}  # each slot's latest write
        for h in range(slots):
            after = [0.0] * slots
            before = [0.0] * slots
            if h in last:
                k = last[h]
                if k + 1 < len(history) and last[history[k + 1]] == k + 1 and history[k + 1] != h:
                    after[history[k + 1]] = 1.0
                if k > 0 and last[history[k - 1]] == k - 1 and history[k - 1] != h:
                    before[history[k - 1]] = 1.0
            assert forward[0, h].tolist() == after and backward[0, h].tolist() == before


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["one-hot write", "write of everything", "nothing written", "saturated link"])
def test_extreme_inputs_give_finite_outputs_and_gradients(impl, case):
    batch, slots, heads = 2, 5, 2
    link, w, p, r = _inputs(batch, slots, heads, seed=10)
    if case == "one-hot write":
        w, p = torch.zeros_like(w), torch.zeros_like(p)
        w[:, 2], p[:, 0] = 1.0, 1.0
    elif case == "write of everything":
        w = torch.full_like(w, 1.0)  # beyond the simplex: 1 − w[i] − w[j] = −1
    elif case == "nothing written":
        link, w, p, r = (torch.zeros_like(x) for x in (link, w, p, r))
    else:
        link = torch.ones_like(link)
    leaves = [x.clone().requires_grad_() for x in (link, w, p, r)]
    outputs = _step(impl, *leaves)
    sum(y.sum() for y in outputs).backward()
    for x in [*outputs, *(leaf.grad for leaf in leaves)]:
        assert torch.isfinite(x).all()


def test_dispatch_picks_the_reference_on_cpu_and_refuses_an_unmet_triton_request(monkeypatch):
    link, w, p, r = _inputs(1, 3, 1, seed=11)
    assert not _dispatch.use_triton("auto", "linkage_step", link, w, p, r)
    with pytest.raises(ValueError, match="impl must be one of"):
        linkage_step(LinkageState(link, p), w, r, impl="cuda")
    monkeypatch.setattr(_dispatch, "_TRITON_INTERPRET", False)
    with pytest.raises(RuntimeError, match="linkage_step: impl='triton' needs CUDA tensors"):
        linkage_step(LinkageState(link, p), w, r, impl="triton")
    monkeypatch.setattr(_dispatch, "_TRITON_INSTALLED", False)
    with pytest.raises(RuntimeError, match="needs the triton package"):
        linkage_step(LinkageState(link, p), w, r, impl="triton")


def test_bad_shapes_and_dtypes_are_named():
    link, w, p, r = _inputs(2, 4, 1, seed=12)
    with pytest.raises(ValueError, match="linkage_step: expected link"):
        linkage_step(LinkageState(link[:, :3], p), w, r)
    with pytest.raises(ValueError, match="read_weights"):
        linkage_step(LinkageState(link, p), w, r[..., :3])
    with pytest.raises(TypeError, match="float32 or float64"):
        linkage_step(LinkageState(link.half(), p.half()), w.half(), r.half())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
@pytest.mark.parametrize("heads", [1, 4])
def test_full_size_triton_matches_the_reference_on_gpu(heads):
    inputs = [x.float().cuda() for x in _inputs(8, 1024, heads, seed=13)]
    want_outputs, want_grads = _outputs_and_gradients("reference", inputs)
    outputs, grads = _outputs_and_gradients("triton", inputs)
    for got, want in zip(outputs + grads, want_outputs + want_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
