import pytest
import torch

from diffvm.interp import Bool, Categorical, Pointer, Scalar, Selection, Vector, parse_type

ALL = [Scalar, Bool, Vector[3], Selection[4], Pointer[5], Categorical[2]]


@pytest.mark.parametrize("t", ALL, ids=str)
def test_samples_have_the_types_shape_and_domain(t):
    g = torch.Generator().manual_seed(0)
    for hard in (False, True):
        x = t.sample(g, 6, hard=hard)
        t.check(x, what="sample")
        t.check_values(x, what="sample")
        assert x.shape == (6, *t.shape)


@pytest.mark.parametrize("t", ALL, ids=str)
def test_hard_values_round_trip_through_plain_values(t):
    x = t.sample(torch.Generator().manual_seed(1), 6, hard=True)
    for row in x:
        plain = t.to_plain(row)
        assert torch.equal(t.from_plain(plain), row)
        assert t.plain_close(plain, t.to_plain(t.from_plain(plain)))


@pytest.mark.parametrize("t", ALL, ids=str)
def test_parse_type_inverts_str(t):
    assert parse_type(str(t)) == t


@pytest.mark.parametrize("t", ALL, ids=str)
def test_merge_is_the_keep_previous_mixture(t):
    g = torch.Generator().manual_seed(2)
    cands = torch.stack([t.sample(g, 4, hard=False) for _ in range(3)])  # (K, B, *shape)
    prev = t.sample(g, 4, hard=False)
    w = torch.softmax(torch.randn(4, 4, generator=g, dtype=torch.float64), -1)[:, :3]  # Σ < 1
    merged = t.merge(w, cands, prev)
    for b in range(4):
        expected = sum(w[b, k] * cands[k, b] for k in range(3)) + (1 - w[b].sum()) * prev[b]
        assert torch.allclose(merged[b], expected)
    t.check_values(merged, what="merged")  # a convex combination stays in the domain


def test_harden_thresholds_truth_and_takes_argmax_of_distributions():
    assert Bool.harden(torch.tensor([0.2, 0.5, 0.7])).tolist() == [0, 0, 1]
    assert Pointer[3].to_plain(torch.tensor([0.2, 0.5, 0.3])) == 1
    assert Selection[3].to_plain(torch.tensor([0.9, 0.1, 0.6])) == (True, False, True)


def test_check_names_the_value_and_the_expected_shape():
    with pytest.raises(TypeError, match=r"my arg: type Vector\[3\] needs shape \(B, 3\) but got \(2, 4\)"):
        Vector[3].check(torch.zeros(2, 4), what="my arg")
    with pytest.raises(TypeError, match="floating"):
        Scalar.check(torch.zeros(2, dtype=torch.long), what="x")
    with pytest.raises(TypeError, match="got list"):
        Scalar.check([1.0], what="x")


def test_bad_sizes_and_unknown_type_names_are_refused():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TypeError, match="positive int"):
            Vector[bad]
    with pytest.raises(ValueError, match="unknown value type 'Matrix'"):
        parse_type("Matrix")
    with pytest.raises(ValueError, match="unknown value type"):
        parse_type("Scalar[3]")


def test_simplex_check_refuses_a_non_distribution():
    with pytest.raises(ValueError, match="not a distribution"):
        Pointer[2].check_values(torch.tensor([[0.7, 0.7]]), what="p")
    with pytest.raises(ValueError, match="NaN"):
        Scalar.check_values(torch.tensor([float("nan")]), what="s")
