import math

import pytest
import torch

from diffvm.interp import Pointer, Scalar, Selection, Vector, check_op, get_op
from diffvm.memory.table import (
    OP_NAMES,
    TABLE_OPS,
    Table,
    TableChoice,
    TableError,
    encode_tables,
    initial_registers,
    table_ops,
    table_step,
    word_match_features,
)

SIZES = [(1, 1), (5, 3)]


def random_selection(gen, b, r):
    return torch.rand(b, r, generator=gen, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# The ops


@pytest.mark.parametrize("rows, columns", SIZES)
@pytest.mark.parametrize("name", OP_NAMES)
def test_every_table_op_passes_check_op(rows, columns, name):
    check_op(table_ops(rows, columns)[name])


def test_table_ops_register_once_per_size_with_declared_types():
    ops = table_ops(4, 2)
    assert table_ops(4, 2) is ops
    assert [o.name for o in ops.values()] == [f"table4::{n}" for n in OP_NAMES if n != "print"] + ["table4x2::print"]
    assert all(get_op(o.name) is o for o in ops.values())
    assert ops["sum"].inputs == (Vector[4], Selection[4]) and ops["sum"].output == Scalar
    assert ops["greater"].inputs == (Vector[4], Scalar) and ops["greater"].output == Selection[4]
    assert ops["print"].inputs == (Pointer[2], Selection[4]) and ops["print"].output == Selection[8]
    assert table_ops(4, 3)["sum"] is ops["sum"]  # row ops do not depend on the columns


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_table_ops_refuse_a_bad_size(bad):
    with pytest.raises(ValueError, match="rows must be an int ≥ 1"):
        table_ops(bad, 1)


def loop_meanings(v, s, s2, p):
    """Each op on one example, written from the paper's equations with plain loops."""
    r = len(v)
    prod = lambda xs: math.prod(xs)  # noqa: E731
    return {
        "sum": sum(s[i] * v[i] for i in range(r)),
        "count": sum(s),
        "greater": [float(v[i] > p) for i in range(r)],
        "lesser": [float(v[i] < p) for i in range(r)],
        "geq": [float(v[i] >= p) for i in range(r)],
        "leq": [float(v[i] <= p) for i in range(r)],
        "max": [s[i] * prod(1 - s[j] for j in range(r) if v[j] > v[i]) for i in range(r)],
        "min": [s[i] * prod(1 - s[j] for j in range(r) if v[j] < v[i]) for i in range(r)],
        "and": [min(s2[i], s[i]) for i in range(r)],
        "or": [max(s2[i], s[i]) for i in range(r)],
        "first": [s[i] * prod(1 - s[j] for j in range(i)) for i in range(r)],
        "last": [s[i] * prod(1 - s[j] for j in range(i + 1, r)) for i in range(r)],
        "prev": [s[i + 1] if i + 1 < r else 0.0 for i in range(r)],
        "next": [s[i - 1] if i > 0 else 0.0 for i in range(r)],
        "reset": [1.0] * r,
    }


def test_op_values_match_plain_loops_of_the_equations():
    gen = torch.Generator().manual_seed(1)
    r = 6
    ops = table_ops(r, 2)
    v = torch.randint(0, 5, (3, r), generator=gen).double()  # ties on purpose
    s, s2 = random_selection(gen, 3, r), random_selection(gen, 3, r)
    p = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    args = {"numbers": v, "sel1": s, "sel2": s2, "number": p}
    for b in range(3):
        expected = loop_meanings(v[b].tolist(), s[b].tolist(), s2[b].tolist(), float(p[b]))
        for name, want in expected.items():
            got = ops[name](*(args[x] for x in TABLE_OPS[name].reads))[b]
            assert torch.allclose(got, torch.tensor(want, dtype=torch.float64)), name
    words = torch.tensor([[3.0, 4.0, 3.0, 1.0, 0.0, 3.0]], dtype=torch.float64)
    assert ops["word_match"](words, torch.tensor([3.0], dtype=torch.float64)).tolist() == [[1, 0, 1, 0, 0, 1]]
    assert ops["difference"](torch.tensor([5.0]), torch.tensor([2.0])).tolist() == [3.0]
    column = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    cells = ops["print"](column, s[:1]).reshape(r, 2)
    assert torch.allclose(cells, s[0, :, None] * column[0])


def test_max_and_first_of_an_empty_selection_select_nothing():
    ops = table_ops(4)
    none = torch.zeros(1, 4)
    assert ops["max"](torch.tensor([[1.0, 5.0, 5.0, 2.0]]), none).sum() == 0
    assert ops["first"](none).sum() == 0
    assert ops["max"](torch.tensor([[1.0, 5.0, 5.0, 2.0]]), torch.ones(1, 4)).tolist() == [[0, 1, 1, 0]]


# --------------------------------------------------------------------------------------------
# Tables


def test_a_valid_table_knows_its_columns():
    t = Table({"a": [1, 2.5], "b": ["x", "y"], "c": [0, -3]})
    assert t.rows == 2 and t.names == ("a", "b", "c")
    assert t.numeric_columns == (0, 2) and t.word_columns == (1,)
    assert t.cell(1, 0) == 2.5 and t.cell(0, 1) == "x"


@pytest.mark.parametrize("columns, message", [
    ({"a": [1, 2], "b": [1, 2, 3]}, "ragged table: column 'b' has 3 rows but column 'a' has 2"),
    ({"a": [1.0, float("nan")]}, "column 'a' row 1: the cell is nan; numeric cells must be finite"),
    ({"a": [1.0, float("inf")]}, "column 'a' row 1: the cell is inf"),
    ({"a": [1, "x"]}, "column 'a' row 1: 'x' is neither a number"),
    ({"a": ["x", 2]}, "column 'a' row 1: 2 in a word column"),
    ({"a": [True, 1]}, "column 'a' row 0: True is neither a number"),
    ({}, "at least one column"),
    ({"a": []}, "at least one row"),
    ({"a": "xyz"}, "cells must be a list"),
])
def test_bad_tables_are_refused_naming_column_and_row(columns, message):
    with pytest.raises(TableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Table(columns)


def test_encode_tables_stacks_columns_and_word_ids():
    vocab = {"x": 3, "y": 4}
    state = encode_tables([Table({"a": [1, 2], "w": ["x", "y"], "b": [5, 6]}),
                           Table({"a": [7, 8], "w": ["y", "y"], "b": [9, 0]})], vocab)
    assert state.numbers.shape == (2, 2, 2) and state.words.shape == (2, 1, 2) and state.rows == 2
    assert state.numbers[0].tolist() == [[1, 2], [5, 6]] and state.words[1].tolist() == [[4, 4]]
    with pytest.raises(TableError, match="word 'z' is not in the vocabulary"):
        encode_tables([Table({"w": ["z"]})], vocab)
    with pytest.raises(TableError, match="a batch needs tables of one shape"):
        encode_tables([Table({"a": [1]}), Table({"a": [1, 2]})], vocab)


def test_word_match_features_compare_every_cell_with_every_token():
    words = torch.tensor([[[3.0, 4.0, 3.0]]])  # (1, 1, 3)
    tokens = torch.tensor([[3, 5]])
    assert word_match_features(words, tokens).tolist() == [[[[1, 0, 1], [0, 0, 0]]]]


# --------------------------------------------------------------------------------------------
# Soft execution


def random_choice(gen, b, k, c, v, q, length, dtype=torch.float64, scale=1.0):
    soft = lambda *shape: torch.softmax(torch.randn(*shape, generator=gen, dtype=dtype) * scale, -1)  # noqa: E731
    return TableChoice(soft(b, k), soft(b, c), soft(b, v), soft(b, k, q), soft(b, length))


def small_batch(gen, b=2, r=4, c=2, v=1, q=2, length=5, dtype=torch.float64):
    table = encode_tables([Table({"n0": [float(x) for x in torch.randint(0, 9, (r,), generator=gen)],
                                  "n1": [float(x) for x in torch.randint(0, 9, (r,), generator=gen)],
                                  "w": ["a", "b", "a", "c"][:r]}) for _ in range(b)], {"a": 1, "b": 2, "c": 3},
                          dtype=dtype)
    numbers = torch.randint(0, 9, (b, q), generator=gen).to(dtype)
    tokens = torch.randint(0, 4, (b, length), generator=gen)
    return table, numbers, tokens


def test_table_step_shapes_and_keep_previous_merge():
    gen = torch.Generator().manual_seed(0)
    table, numbers, tokens = small_batch(gen)
    hist = [initial_registers(2, 4, 2, dtype=torch.float64)]
    choice = random_choice(gen, 2, len(OP_NAMES), 2, 1, 2, 5)
    out = table_step(OP_NAMES, choice, table, numbers, tokens, hist)
    assert out.selection.shape == (2, 4) and out.scalar.shape == (2,) and out.lookup.shape == (2, 4, 2)
    # all mass on count: the selection and lookup registers keep their values
    k = OP_NAMES.index("count")
    hot = choice._replace(op=torch.nn.functional.one_hot(torch.tensor([k, k]), len(OP_NAMES)).double())
    out = table_step(OP_NAMES, hot, table, numbers, tokens, hist)
    assert torch.equal(out.selection, hist[0].selection) and torch.equal(out.lookup, hist[0].lookup)
    assert out.scalar.tolist() == [4.0, 4.0]


def test_table_step_gradients_in_float64():
    gen = torch.Generator().manual_seed(2)
    table, numbers, tokens = small_batch(gen)
    ops = OP_NAMES
    choice = random_choice(gen, 2, len(ops), 2, 1, 2, 5)
    leaves = tuple(x.clone().requires_grad_(True) for x in choice)

    def run(*xs):
        hist = [initial_registers(2, 4, 2, dtype=torch.float64)]
        for _ in range(3):
            hist.append(table_step(ops, TableChoice(*xs), table, numbers, tokens, hist))
        return hist[-1].selection, hist[-1].scalar, hist[-1].lookup

    torch.autograd.gradcheck(run, leaves, atol=1e-6, rtol=1e-4)


def test_extreme_tables_and_saturated_choices_stay_finite():
    gen = torch.Generator().manual_seed(3)
    table, numbers, tokens = small_batch(gen, dtype=torch.float32)
    table = table._replace(numbers=table.numbers * 1e30)
    hist = [initial_registers(2, 4, 2)]
    choice = random_choice(gen, 2, len(OP_NAMES), 2, 1, 2, 5, dtype=torch.float32, scale=1e4)
    for _ in range(4):
        hist.append(table_step(OP_NAMES, choice, table, numbers * 1e30, tokens, hist))
    assert all(torch.isfinite(x).all() for x in hist[-1])
    assert ((hist[-1].selection >= 0) & (hist[-1].selection <= 1)).all()
