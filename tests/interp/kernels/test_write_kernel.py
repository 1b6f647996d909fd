"""The erase/add write fused with reads (diffvm.interp.kernels.write): the reference against the NTM's
write as it was written before it used the op and a plain loop, the Triton kernel (under
TRITON_INTERPRET=1 on CPU) and the custom op's backward against autograd of the reference, on
awkward shapes, in float32 and float64, and hard writes against a Python list of rows."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import outputs_and_gradients

from diffvm.interp.kernels import _dispatch, write_and_read, write_and_read_reference

IMPLS = ["reference", "triton"]
# (B, N, W, H, R, reads_before_write): ones, primes, no read heads, N and W past one tile
SHAPES = [(1, 1, 1, 1, 1, False), (2, 5, 3, 2, 3, True), (3, 7, 5, 3, 0, False), (2, 37, 5, 1, 2, False),
          (1, 3, 67, 2, 1, True)]
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
NAMES = ["M_t", "reads", "dM", "dw", "de", "da", "dwr"]


@pytest.fixture(autouse=True)
def poison_kernel_buffers(monkeypatch):
    """Every buffer a Triton launch fills starts as NaN: an element a kernel skips fails the test."""
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)


def _inputs(batch, slots, width, heads, read_heads, *, seed, dtype=torch.float64):
    """M_{t−1}, write weightings on the simplex, erase in (0, 1), add, read weightings on the simplex."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, slots, width, generator=gen, dtype=dtype),
            torch.softmax(torch.randn(batch, heads, slots, generator=gen, dtype=dtype), -1),
            torch.rand(batch, heads, width, generator=gen, dtype=dtype),
            torch.randn(batch, heads, width, generator=gen, dtype=dtype),
            torch.softmax(torch.randn(batch, read_heads, slots, generator=gen, dtype=dtype), -1))




def _ntm_step(before):
    """The write as diffvm.memory.ntm.erase_add computed it before it used the op, then the reads of
    M_t (or of M_{t−1}) as NTMMemory did."""
    def step(memory, write_weights, erase, add, read_weights):
        keep = (1 - write_weights.unsqueeze(-1) * erase.unsqueeze(-2)).prod(1)  # (B, N, W)
        new = memory * keep + torch.einsum("bhn,bhw->bnw", write_weights, add)  # (B, N, W)
        return new, torch.einsum("brn,bnw->brw", read_weights, memory if before else new)
    return step


@pytest.mark.parametrize("before", [False, True], ids=["reads-after", "reads-before"])
@pytest.mark.parametrize("impl", ["oracle", *IMPLS])
def test_write_and_gradients_match_the_ntms_former_erase_add(impl, before):
    inputs = _inputs(2, 5, 3, 2, 3, seed=1)
    fn = (lambda *xs: write_and_read_reference(*xs, before)) if impl == "oracle" else \
        (lambda *xs: write_and_read(*xs, reads_before_write=before, impl=impl))
    want, want_grads = outputs_and_gradients(_ntm_step(before), inputs)
    got, grads = outputs_and_gradients(fn, inputs)
    if impl != "triton":  # the same operations: the same values
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    if impl == "oracle":  # and, through autograd, the same gradients
        assert all(torch.equal(a, b) for a, b in zip(grads, want_grads))
    for a, b in zip(got + grads, want + want_grads):
        torch.testing.assert_close(a, b, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("before", [False, True], ids=["reads-after", "reads-before"])
@pytest.mark.parametrize("impl", IMPLS)
def test_write_matches_a_plain_loop_over_the_papers_equations(impl, before):
    batch, slots, width, heads, read_heads = 2, 4, 3, 2, 2
    memory, ww, e, a, rw = _inputs(batch, slots, width, heads, read_heads, seed=2)
    new, reads = write_and_read(memory, ww, e, a, rw, reads_before_write=before, impl=impl)
    for b in range(batch):
        want = [[0.0] * width for _ in range(slots)]
        for n in range(slots):
            for w in range(width):
                keep = 1.0
                for h in range(heads):  # eq. 3: every head's erase
                    keep *= 1 - ww[b, h, n].item() * e[b, h, w].item()
                added = sum(ww[b, h, n].item() * a[b, h, w].item() for h in range(heads))  # eq. 4
                want[n][w] = memory[b, n, w].item() * keep + added
        assert new[b].tolist() == [pytest.approx(row, abs=1e-12) for row in want]
        read_from = memory[b].tolist() if before else want
        for r in range(read_heads):  # eq. 2
            expected = [sum(rw[b, r, n].item() * read_from[n][w] for n in range(slots)) for w in range(width)]
            assert reads[b, r].tolist() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-N{}-W{}-H{}-R{}-before{}".format(*s))
@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_and_every_gradient_match_autograd_of_the_reference(impl, shape, dtype):
    *sizes, before = shape
    inputs = _inputs(*sizes, seed=3, dtype=dtype)
    want, want_grads = outputs_and_gradients(lambda *xs: write_and_read_reference(*xs, before), inputs)
    got, grads = outputs_and_gradients(lambda *xs: write_and_read(*xs, reads_before_write=before, impl=impl), inputs)
    for name, a, b in zip(NAMES, got + grads, want + want_grads):
        assert a.dtype == dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("before", [False, True], ids=["reads-after", "reads-before"])
@pytest.mark.parametrize("impl", IMPLS)
def test_float64_gradcheck(impl, before):
    inputs = tuple(x.requires_grad_() for x in _inputs(1, 3, 2, 2, 2, seed=4))
    assert torch.autograd.gradcheck(lambda *xs: write_and_read(*xs, reads_before_write=before, impl=impl), inputs)


def test_a_full_erase_by_one_head_gets_the_other_heads_gradient_without_dividing_by_zero():
    """w = e = 1 makes a factor 1 − w·e = 0; E_h multiplies the other factors instead of dividing."""
    memory, ww, e, a, rw = _inputs(1, 3, 2, 2, 1, seed=5)
    ww = torch.tensor([[[1.0, 0.0, 0.0], [0.3, 0.5, 0.2]]], dtype=torch.float64)
    e = torch.ones_like(e)
    want, want_grads = outputs_and_gradients(lambda *xs: write_and_read_reference(*xs), (memory, ww, e, a, rw))
    for impl in IMPLS:
        got, grads = outputs_and_gradients(lambda *xs, impl=impl: write_and_read(*xs, impl=impl),
                                            (memory, ww, e, a, rw))
        for x, y in zip(got + grads, want + want_grads):
            assert torch.isfinite(x).all()
            torch.testing.assert_close(x, y, **TOLERANCES[torch.float64])


@pytest.mark.parametrize("triton", [False, True], ids=["reference", "triton"])
def test_opcheck(triton):
    from diffvm.interp.kernels import write

    inputs = [x.requires_grad_() for x in _inputs(2, 5, 3, 2, 3, seed=6)]
    torch.library.opcheck(write._write_and_read, (*inputs, False, triton))
    gen = torch.Generator().manual_seed(7)
    grads = (torch.randn(2, 5, 3, generator=gen, dtype=torch.float64),
             torch.randn(2, 3, 3, generator=gen, dtype=torch.float64))
    torch.library.opcheck(write._write_and_read_backward, (*grads, *(x.detach() for x in inputs), True, triton))


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), min_size=1, max_size=4),
       st.sampled_from(IMPLS))
def test_hard_writes_and_reads_are_a_list_of_rows(moves, impl):
    """Soft = hard: with one-hot weightings and 0/1 erases, each step reads a row of a Python list and
    overwrites (e = 1) or adds to (e = 0) another, as `NTMMemory.machine_step` does."""
    slots, width = 4, 2
    memory = torch.zeros(1, slots, width, dtype=torch.float64)
    rows = [[0.0] * width for _ in range(slots)]
    eye = torch.eye(slots, dtype=torch.float64)
    for t, (read_at, write_at, overwrite) in enumerate(moves):
        value = [t + 1.0, -2.0 * t]
        memory, read = write_and_read(memory, eye[write_at].reshape(1, 1, slots),
                                      torch.full((1, 1, width), float(overwrite), dtype=torch.float64),
                                      torch.tensor([[value]], dtype=torch.float64),
                                      eye[read_at].reshape(1, 1, slots), reads_before_write=True, impl=impl)
        assert read[0, 0].tolist() == rows[read_at]
        rows[write_at] = value if overwrite else [x + v for x, v in zip(rows[write_at], value)]
        assert memory[0].tolist() == rows


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ["zero memory", "full erase", "huge values"])
def test_extreme_inputs_give_finiteoutputs_and_gradients(impl, case):
    memory, ww, e, a, rw = _inputs(2, 5, 3, 2, 2, seed=8, dtype=torch.float32)
    if case == "zero memory":
        memory = torch.zeros_like(memory)
    elif case == "full erase":
        ww, e = torch.ones_like(ww), torch.ones_like(e)
    else:
        memory, a = memory * 1e30, a * 1e30
    leaves = [x.clone().requires_grad_() for x in (memory, ww, e, a, rw)]
    new, reads = write_and_read(*leaves, impl=impl)
    (new.sum() * 1e-30 + reads.sum() * 1e-30).backward()
    for x in [new, reads, *(leaf.grad for leaf in leaves)]:
        assert torch.isfinite(x).all()


def test_bad_arguments_are_named():
    memory, ww, e, a, rw = _inputs(2, 5, 3, 2, 2, seed=9)
    with pytest.raises(ValueError, match="write_and_read: expected memory"):
        write_and_read(memory, ww[:, :, :4], e, a, rw)
    with pytest.raises(ValueError, match="write_and_read: expected memory"):
        write_and_read(memory, ww, e, a, rw[:, :, :4])
    with pytest.raises(TypeError, match="write_and_read: expected float32 or float64"):
        write_and_read(memory.float(), ww, e, a, rw)
    with pytest.raises(ValueError, match="write_and_read: impl must be one of"):
        write_and_read(memory, ww, e, a, rw, impl="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full-size kernel test needs a CUDA GPU")
@pytest.mark.parametrize("before", [False, True], ids=["reads-after", "reads-before"])
def test_full_size_triton_matches_the_reference_on_gpu(before):
    inputs = [x.float().cuda() for x in _inputs(32, 1024, 64, 2, 4, seed=10)]
    want, want_grads = outputs_and_gradients(
        lambda *xs: write_and_read(*xs, reads_before_write=before, impl="reference"), inputs)
    got, grads = outputs_and_gradients(lambda *xs: write_and_read(*xs, reads_before_write=before, impl="triton"),
                                        inputs)
    for a, b in zip(got + grads, want + want_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
