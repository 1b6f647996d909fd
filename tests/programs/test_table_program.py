import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.memory.table import OP_NAMES, TABLE_OPS, Table, encode_tables, initial_registers, table_step
from diffvm.programs.table_program import (
    TableProgram,
    TableProgramError,
    TableStep,
    discretise_choices,
    program_choices,
    run_table_program,
)

WORDS = ["a", "b", "c"]
VOCAB = {w: i + 1 for i, w in enumerate(WORDS)}
NUMERIC, WORD_COLUMN = (0, 2), (1,)  # the test table's column kinds: n0, w, n1


@st.composite
def tables_and_questions(draw):
    rows = draw(st.integers(1, 5))
    cell = st.integers(-3, 3)
    table = Table({"n0": draw(st.lists(cell, min_size=rows, max_size=rows)),
                   "w": draw(st.lists(st.sampled_from(WORDS), min_size=rows, max_size=rows)),
                   "n1": draw(st.lists(cell, min_size=rows, max_size=rows))})
    numbers = draw(st.lists(cell.map(float), min_size=1, max_size=3))
    tokens = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
    return table, numbers, tokens


@st.composite
def programs(draw, numbers=3, tokens=4, length=(1, 4)):
    steps = []
    for _ in range(draw(st.integers(*length))):
        op = draw(st.sampled_from(OP_NAMES))
        spec = TABLE_OPS[op]
        column = {"numbers": st.sampled_from(NUMERIC), "words": st.sampled_from(WORD_COLUMN)}.get(spec.column)
        ref = {"number": st.integers(0, numbers - 1), "token": st.integers(0, tokens - 1)}.get(spec.reference)
        pick = lambda strategy: None if strategy is None else draw(strategy)  # noqa: E731
        steps.append(TableStep(op, pick(column), pick(ref)))
    return TableProgram(tuple(steps))


def soft_run(program, table, numbers, tokens):
    """The soft machine fed the program's one-hot choices: (scalar, selection, lookup) of batch 1."""
    choices = program_choices(program, OP_NAMES, table, numbers=len(numbers), tokens=len(tokens))
    state = encode_tables([table], VOCAB, dtype=torch.float64)
    nums = torch.tensor([numbers], dtype=torch.float64)
    toks = torch.tensor([[VOCAB[w] for w in tokens]])
    hist = [initial_registers(1, table.rows, 2, dtype=torch.float64)]
    for c in choices:
        hist.append(table_step(OP_NAMES, c, state, nums, toks, hist))
    return hist[-1]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_one_hot_soft_execution_equals_the_hard_interpreter(data):
    table, numbers, tokens = data.draw(tables_and_questions())
    program = data.draw(programs(numbers=len(numbers), tokens=len(tokens)))
    hard = run_table_program(program, table, numbers, tokens)
    soft = soft_run(program, table, numbers, tokens)
    assert soft.scalar.item() == pytest.approx(hard.scalar, abs=1e-9)
    assert tuple(bool(x > 0.5) for x in soft.selection[0]) == hard.selection
    assert torch.all((soft.selection == 0) | (soft.selection == 1))  # hard values stay hard
    cells = {(i, NUMERIC[j]) for i, j in (soft.lookup[0] > 0.5).nonzero().tolist()}
    assert cells == set(hard.cells)


@settings(max_examples=60, deadline=None)
@given(program=programs())
def test_json_round_trip_and_discretise_inverts_program_choices(program):
    assert TableProgram.from_json(program.to_json()) == program
    table = Table({"n0": [1, 2], "w": ["a", "b"], "n1": [3, 4]})
    choices = program_choices(program, OP_NAMES, table, numbers=3, tokens=4)
    assert discretise_choices(choices, OP_NAMES, table) == program


def test_listing_is_one_sql_like_expression():
    program = TableProgram((TableStep("reset"), TableStep("reset"), TableStep("greater", 2, 1), TableStep("count")))
    assert str(program) == "count(select(greater(col=2, q[1])))"
    both = TableProgram((TableStep("greater", 0, 0), TableStep("lesser", 2, 1), TableStep("and"),
                         TableStep("sum", 0)))
    assert both.expression() == "sum(col=0, select(and(greater(col=0, q[0]), lesser(col=2, q[1]))))"
    diff = TableProgram((TableStep("count"), TableStep("greater", 0, 0), TableStep("count"),
                         TableStep("difference")))
    assert str(diff) == "difference(count(select(all)), count(select(greater(col=0, q[0]))))"
    assert diff.listing().splitlines()[0] == "s1 = count(select(·))"
    assert diff.listing().splitlines()[-1] == f"answer = {diff}"
    assert TableProgram((TableStep("word_match", 1, 3), TableStep("print", 0))).expression() == \
        "print(col=0, select(word_match(col=1, w[3])))"


def test_hard_interpreter_values_by_hand():
    table = Table({"n0": [5, 1, 7, 7], "w": ["a", "b", "a", "c"], "n1": [10, 20, 30, 40]})
    run = lambda *steps: run_table_program(TableProgram(steps), table, [4.0, 7.0], ["x", "a"])  # noqa: E731
    assert run(TableStep("greater", 0, 0), TableStep("sum", 2)).scalar == 80.0
    assert run(TableStep("max", 0), TableStep("print", 2)).cells == {(2, 2), (3, 2)}
    assert run(TableStep("word_match", 1, 1), TableStep("last"), TableStep("prev"), TableStep("count")).scalar == 1
    assert run(TableStep("sum", 0), TableStep("reset"), TableStep("sum", 2), TableStep("difference")).scalar == -80
    assert run(TableStep("greater", 0, None)).selection == (False,) * 4


@pytest.mark.parametrize("step, message", [
    (TableStep("greater", 0, 2), r"question number q\[2\] is missing; the question has 2 number\(s\)"),
    (TableStep("word_match", 1, 5), r"question token w\[5\] is missing"),
    (TableStep("sum", 1), r"column 1 \('w'\) holds words, the op needs numbers"),
    (TableStep("word_match", 0, 0), r"column 0 \('n0'\) holds numbers, the op needs words"),
    (TableStep("sum", 9), "column 9 out of range; the table has 3 columns"),
])
def test_programs_that_do_not_fit_the_question_are_refused_by_step(step, message):
    table = Table({"n0": [1], "w": ["a"], "n1": [2]})
    with pytest.raises(TableProgramError, match="table program step 1 .*" + message):
        run_table_program(TableProgram((step,)), table, [1.0, 2.0], ["a"])


@pytest.mark.parametrize("make, message", [
    (lambda: TableStep("divide"), "unknown table op 'divide'"),
    (lambda: TableStep("sum"), "op 'sum': column must be an int"),
    (lambda: TableStep("count", 1), "op 'count': column must be None"),
    (lambda: TableStep("count", None, 0), "op 'count' reads no question reference"),
    (lambda: TableStep("greater", -1, 0), "column must be an int ≥ 0"),
    (lambda: TableProgram(()), "at least one step"),
    (lambda: TableProgram.from_json("{"), "table program JSON"),
    (lambda: TableProgram.from_json('{"format": "x"}'), "not a table program"),
    (lambda: TableProgram.from_json('{"format": "diffvm.table_program/1", "steps": [{"opp": 1}]}'), "step 1"),
])
def test_malformed_programs_are_refused(make, message):
    with pytest.raises(TableProgramError, match=message):
        make()
