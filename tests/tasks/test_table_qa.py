import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.memory.table import Table
from diffvm.tasks.table_qa import (
    COMPOSITIONAL_FAMILIES,
    NUMBER_TOKEN,
    SINGLE_FAMILIES,
    TableQA,
    TableQAConfig,
    encode_questions,
    reference_program,
    vocabulary,
)

ALL = SINGLE_FAMILIES + COMPOSITIONAL_FAMILIES


def col(table, j):
    return list(table.columns[table.names[j]])


def count(xs):
    return float(sum(bool(x) for x in xs))


def extreme_rows(values, pick):
    best = pick(values)
    return [i for i, v in enumerate(values) if v == best]


# Each family's answer from the drawn slots, in plain Python, without the grammar or the programs.
def independent_answer(family, t, slots):
    s = [v for _, v in slots]
    r = t.rows
    answers = {
        "single_count_all": lambda: r,
        "single_sum_all": lambda: sum(col(t, s[0])),
        "single_count_greater": lambda: count(v > s[1] for v in col(t, s[0])),
        "single_count_lesser": lambda: count(v < s[1] for v in col(t, s[0])),
        "single_count_geq": lambda: count(v >= s[1] for v in col(t, s[0])),
        "single_count_leq": lambda: count(v <= s[1] for v in col(t, s[0])),
        "single_count_word": lambda: count(w == s[1] for w in col(t, s[0])),
        "single_print_max": lambda: {(i, s[0]) for i in extreme_rows(col(t, s[1]), max)},
        "single_print_min": lambda: {(i, s[0]) for i in extreme_rows(col(t, s[1]), min)},
        "single_print_first": lambda: {(0, s[0])},
        "single_print_last": lambda: {(r - 1, s[0])},
        "comp_sum_greater": lambda: sum(a for a, b in zip(col(t, s[0]), col(t, s[1])) if b > s[2]),
        "comp_sum_lesser": lambda: sum(a for a, b in zip(col(t, s[0]), col(t, s[1])) if b < s[2]),
        "comp_count_and": lambda: count(a > s[1] and b < s[3] for a, b in zip(col(t, s[0]), col(t, s[2]))),
        "comp_count_or": lambda: count(a > s[1] or b < s[3] for a, b in zip(col(t, s[0]), col(t, s[2]))),
        "comp_sum_word": lambda: sum(a for a, w in zip(col(t, s[0]), col(t, s[1])) if w == s[2]),
        "comp_print_greater": lambda: {(i, s[0]) for i, b in enumerate(col(t, s[1])) if b > s[2]},
        "comp_count_difference": lambda: r - count(v > s[1] for v in col(t, s[0])),
        "comp_sum_difference": lambda: sum(col(t, s[0])) - sum(col(t, s[1])),
        "comp_print_next_max": lambda: {(i + 1, s[0]) for i in extreme_rows(col(t, s[1]), max) if i + 1 < r},
        "comp_print_prev_min": lambda: {(i - 1, s[0]) for i in extreme_rows(col(t, s[1]), min) if i >= 1},
    }
    assert set(answers) == set(ALL), "a family without an independent answer"
    return answers[family]()


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), family=st.sampled_from(ALL), rows=st.integers(1, 9))
def test_reference_program_answer_equals_an_independent_computation(seed, family, rows):
    task = TableQA(TableQAConfig(families=ALL, rows=rows))
    q = task.question(np.random.default_rng(seed), family=family)
    want = independent_answer(family, q.table, q.slots)
    if q.answer_kind == "scalar":
        assert q.answer.scalar == pytest.approx(want)
    else:
        assert set(q.answer.cells) == want
    assert len(q.program.steps) == 4
    assert q.text.endswith("?") and q.family == family
    assert [w for w in q.tokens if w == NUMBER_TOKEN].__len__() == len(q.numbers)


def test_same_seed_same_questions_and_no_global_random_state_is_read():
    task = TableQA(TableQAConfig(families=ALL))
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    a = task.sample(np.random.default_rng(5), 20)
    b = task.sample(np.random.default_rng(5), 20)
    assert [(q.text, q.table, q.answer) for q in a] == [(q.text, q.table, q.answer) for q in b]
    assert np.array_equal(np.random.get_state()[1], state)
    c = task.sample(np.random.default_rng(6), 20)
    assert [q.text for q in a] != [q.text for q in c]


def test_families_come_from_the_grammar_and_every_family_is_drawn():
    assert "single_count_greater" in SINGLE_FAMILIES and "comp_count_and" in COMPOSITIONAL_FAMILIES
    task = TableQA(TableQAConfig(families=ALL))
    seen = {q.family for q in task.sample(np.random.default_rng(0), 400)}
    assert seen == set(ALL)


def test_parse_reads_a_written_question():
    task = TableQA()
    table = Table({"price": [5, 1, 7], "color": ["red", "blue", "red"], "age": [3, 4, 5]})
    q = task.parse(table, "how many rows have price greater than 4 and age less than 5 ?")
    assert q.numbers == (4.0, 5.0) and q.answer.scalar == 1.0
    assert str(q.program) == "count(select(and(greater(col=0, q[0]), lesser(col=2, q[1]))))"
    q = task.parse(table, "what is the sum of age where color red ?")
    assert q.answer.scalar == 8.0 and q.tokens[8] == "red" and "word_match(col=1, w[8])" in str(q.program)


def test_a_meaning_longer_than_t_steps_is_refused():
    meaning = ("count", ("and", ("and", ("greater", 0, 0), ("lesser", 0, 1)), ("greater", 0, 0)))
    with pytest.raises(ValueError, match="takes 6 steps, more than T = 4"):
        reference_program(meaning, 4)


@pytest.mark.parametrize("field, value", [("rows", 0), ("numeric_columns", 0), ("numeric_columns", 99),
                                          ("families", ("nope",)), ("families", ())])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"TableQAConfig.{field}"):
        TableQA(TableQAConfig(**{field: value}))


def test_word_families_need_a_word_column():
    with pytest.raises(ValueError, match="word_columns ≥ 1"):
        TableQAConfig(word_columns=0, families=("single_count_word",)).validate()


def test_larger_tables_and_encoded_batches():
    task = TableQA(TableQAConfig(families=ALL))
    questions = task.sample(np.random.default_rng(1), 6, rows=13)
    assert all(q.table.rows == 13 for q in questions)
    batch = encode_questions(questions)
    b, length = batch.tokens.shape
    assert b == 6 and batch.table.numbers.shape == (6, 3, 13) and batch.table.words.shape == (6, 1, 13)
    assert batch.lookup.shape == (6, 13, 3) and batch.column_names.shape == (6, 3)
    vocab = vocabulary()
    for i, q in enumerate(questions):
        assert batch.tokens[i, :len(q.tokens)].tolist() == [vocab[w] for w in q.tokens]
        assert batch.token_mask[i].sum() == len(q.tokens)
        assert batch.number_mask[i].sum() == len(q.numbers)
        assert bool(batch.is_scalar[i]) == (q.answer_kind == "scalar")
        if q.answer_kind == "lookup":
            assert int(batch.lookup[i].sum()) == len(q.answer.cells)
        else:
            assert batch.scalar[i].item() == pytest.approx(q.answer.scalar)
    assert torch.all(batch.tokens[batch.number_mask.nonzero()[:, 0], 0] >= 0)


def test_grammar_is_package_data():
    from importlib.resources import files
    assert files("diffvm.tasks").joinpath("table_questions.lark").is_file()
