"""Tests of `diffvm.tasks.l2e_task`: the Learning-to-Execute sequence task `l2e`.

The batch layout (program, GO, teacher-forced answer, padding), the mask covering exactly the
answers, targets decoding to the examples' outputs, the curriculum levels, the splits, the
determinism checks every task gets, and the base-class metrics on this task.
"""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.programs.snippets import evaluate, parse_snippet
from diffvm.tasks import TASKS, L2EConfig, L2ETask, encode_examples
from diffvm.tasks.l2e import VOCABULARY, Example, decode, sample_examples, split_of
from diffvm.tasks.l2e import Curriculum as L2ECurriculum
from diffvm.tasks.l2e_task import INPUT_SIZE, PHASE, parse_point
from tests.tasks.task_checks import check_bad_requests_refused, check_no_global_random_state, check_same_seed_same_batch

V = len(VOCABULARY)


def _unpack(batch, b: int) -> tuple[str, str, int]:
    """(program text, target text, padded steps) of example b, read back from the batch by a plain loop."""
    inputs, targets, mask = batch.inputs[b], batch.targets[b], batch.mask[b]
    program, answer, padding = [], [], 0
    for t in range(inputs.shape[0]):
        if mask[t] == 1:
            answer.append(VOCABULARY[int(targets[t].argmax())])
        elif inputs[t, PHASE] == 0 and inputs[t].sum() == 1:
            program.append(VOCABULARY[int(inputs[t, :V].argmax())])
        else:
            padding += 1
    return "".join(program), "".join(answer), padding


# --- the layout of a batch ---------------------------------------------------------------------

def test_shapes_are_the_vocabulary_plus_a_phase_bit_in_and_the_vocabulary_out():
    task = L2ETask(L2EConfig(length=2, nesting=2))
    batch = task.sample(np.random.default_rng(0), 5)
    steps = batch.inputs.shape[1]
    assert (task.input_size, task.output_size) == (INPUT_SIZE, V) == (V + 1, 42)
    assert batch.inputs.shape == (5, steps, V + 1)
    assert batch.targets.shape == (5, steps, V) and batch.mask.shape == (5, steps)
    assert all(x.dtype == torch.float32 for x in batch)


def test_a_hand_written_example_is_encoded_step_by_step_as_the_docstring_table_says():
    batch = encode_examples([Example("print(12)@", "12."), Example("print(3+4)@", "7.")])
    assert batch.inputs.shape[1] == 10 + 3  # the longest: |P| + |A| = 10 + 3 (the other 11 + 2)
    x, y, m = batch.inputs[0], batch.targets[0], batch.mask[0]
    for t, c in enumerate("print(12)@"):
        assert x[t, VOCABULARY.index(c)] == 1 and x[t].sum() == 1 and m[t] == 0
    assert x[10, PHASE] == 1 and x[10].sum() == 1  # GO: the phase bit alone
    assert x[11, PHASE] == 1 and x[11, VOCABULARY.index("1")] == 1 and x[11].sum() == 2  # previous target char
    assert x[12, PHASE] == 1 and x[12, VOCABULARY.index("2")] == 1 and x[12].sum() == 2
    assert decode(y[10:].argmax(-1).numpy()) == "12." and m[10:].tolist() == [1, 1, 1]
    # the shorter example: 11 + 2 steps exactly, no padding
    assert decode(batch.targets[1, 11:].argmax(-1).numpy()) == "7." and batch.mask[1].sum() == 2


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 5), nesting=st.integers(1, 3),
       strategy=st.sampled_from(["baseline", "naive", "mix", "combined"]))
def test_the_mask_covers_exactly_the_answers_and_the_targets_decode_to_the_examples_outputs(
        seed, length, nesting, strategy):
    task = L2ETask(L2EConfig(length=length, nesting=nesting, strategy=strategy))
    batch = task.sample(np.random.default_rng(seed), 6, level=int(np.random.default_rng(seed).integers(task.levels)))
    assert batch.inputs.shape[1] == max(len(_unpack(batch, b)[0]) + len(_unpack(batch, b)[1]) for b in range(6))
    for b in range(6):
        text, target, padding = _unpack(batch, b)
        p, a = len(text), len(target)
        assert text.endswith("@") and target.endswith(".")
        assert target == f"{evaluate(parse_snippet(text))}."  # the output of the program read back
        assert torch.equal(batch.mask[b].nonzero().squeeze(1), torch.arange(p, p + a))
        assert decode(batch.targets[b, p:p + a].argmax(-1).numpy()) == target
        # teacher forcing: answer step j > 0 reads target[j − 1]; padding is all zeros, class 0
        assert all(VOCABULARY[int(batch.inputs[b, p + j, :V].argmax())] == target[j - 1] for j in range(1, a))
        assert batch.inputs[b, p:p + a, PHASE].eq(1).all()
        assert padding == batch.inputs.shape[1] - p - a
        assert batch.inputs[b, p + a:].eq(0).all() and batch.targets[b, p + a:, 0].eq(1).all()


def test_addition_and_memorisation_give_their_examples():
    for problem, shape in [("addition", r"print\((\d{3})\+(\d{3})\)@"), ("memorisation", r"print\((\d{3})\)@")]:
        task = L2ETask(L2EConfig(problem=problem, length=3, strategy="baseline"))
        batch = task.sample(np.random.default_rng(1), 8)
        for b in range(8):
            text, target, _ = _unpack(batch, b)
            numbers = [int(n) for n in re.fullmatch(shape, text).groups()]
            assert target == f"{sum(numbers)}."


# --- levels and splits -----------------------------------------------------------------------------

@pytest.mark.parametrize("strategy, levels", [("baseline", 1), ("mix", 1), ("naive", 12), ("combined", 12)])
def test_growing_curricula_have_a_level_per_stage_and_the_others_one(strategy, levels):
    assert L2ETask(L2EConfig(length=4, nesting=3, strategy=strategy)).levels == levels


def test_level_k_is_the_curriculums_stage_k_one_more_digit_then_one_more_nesting():
    task = L2ETask(L2EConfig(length=3, nesting=2, strategy="naive"))
    stage = L2ECurriculum("naive", 3, 2)
    for level in range(task.levels):
        assert task.curriculum(level) == stage
        stage = stage.harder()
    assert task.curriculum(None).at_target and task.curriculum(task.levels - 1) == stage


def test_naive_level_0_draws_one_digit_single_operation_programs_and_the_last_level_the_target():
    task = L2ETask(L2EConfig(length=4, nesting=2, strategy="naive"))
    rng = np.random.default_rng(3)
    texts = [_unpack(task.sample(rng, 20, level=0), b)[0] for b in range(20)]
    assert max(int(n) for t in texts for n in re.findall(r"\d+", t)) <= 10  # constants in [1, 10]
    batch = task.sample(rng, 20)  # the last level: (4, 2)
    texts = [_unpack(batch, b)[0] for b in range(20)]
    assert max(int(n) for t in texts for n in re.findall(r"\d+", t)) > 10


def test_addition_has_a_level_per_digit():
    task = L2ETask(L2EConfig(problem="addition", length=5, strategy="combined"))
    assert task.levels == 5 and task.curriculum(2).length == 3 and task.curriculum(2).nesting == 1


def test_splits_are_train_then_one_per_point_and_a_point_draws_exactly_its_length_and_nesting():
    assert L2ETask(L2EConfig(length=4, nesting=3)).splits == ("train", "4x1", "4x2", "4x3")
    task = L2ETask(L2EConfig(problem="programs", length=4, nesting=1, eval_points="2x1,3x2"))
    assert task.splits == ("train", "2x1", "3x2")
    batch = task.sample_split(np.random.default_rng(0), 30, "3x2")
    texts = [_unpack(batch, b)[0] for b in range(30)]
    # 3 digits: constants up to 1000 and, over 30 programs, one above 100
    assert max(int(n) for t in texts for n in re.findall(r"\d+", t)) in range(101, 1001)
    assert L2ETask(L2EConfig(problem="addition", length=5)).splits == ("train", "5x1")


def test_training_and_evaluation_batches_come_from_disjoint_hash_splits():
    task = L2ETask(L2EConfig(length=2, nesting=2, eval_points="2x2"))
    rng = np.random.default_rng(4)
    train = task.sample(rng, 30)
    split = task.sample_split(rng, 30, "2x2")
    assert all(split_of(Example(*_unpack(train, b)[:2])) == "train" for b in range(30))
    assert all(split_of(Example(*_unpack(split, b)[:2])) == "validation" for b in range(30))


def test_the_same_seed_gives_the_same_batch_and_no_global_random_state_is_read(monkeypatch):
    task = L2ETask(L2EConfig(length=2, nesting=2))
    check_same_seed_same_batch(task)
    check_no_global_random_state(task, monkeypatch)
    check_bad_requests_refused(task, "2x1")


def test_encoding_matches_the_library_sampler_for_the_same_seed():
    task = L2ETask(L2EConfig(length=3, nesting=2, strategy="combined"))
    examples = sample_examples(np.random.default_rng(8), 4, task.curriculum(None), split="train")
    batch = task.sample(np.random.default_rng(8), 4)
    assert [(_unpack(batch, b)[:2]) for b in range(4)] == [(e.text, e.target) for e in examples]


# --- metrics ---------------------------------------------------------------------------------------

def test_exact_match_needs_every_answer_character_and_accuracy_counts_characters():
    task = L2ETask(L2EConfig(length=2))
    batch = encode_examples([Example("print(12)@", "12."), Example("print(3)@", "3.")])
    logits = 10 * batch.targets.clone()
    assert task.metrics(logits, batch) == {"accuracy": 1.0, "exact": 1.0}
    logits[0, 11] = 10 * torch.eye(V)[VOCABULARY.index("9")]  # "12." read as "19."
    logits[1, :9] = 0  # unscored program steps: changing them changes nothing
    assert task.metrics(logits, batch) == pytest.approx({"accuracy": 4 / 5, "exact": 0.5})


# --- configuration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, field", [
    ({"problem": "sorting"}, "problem"), ({"length": 0}, "length"), ({"length": 19}, "length"),
    ({"nesting": 0}, "nesting"), ({"problem": "addition", "nesting": 2}, "nesting"),
    ({"strategy": "random"}, "strategy"), ({"eval_points": "4-1"}, "eval_points"),
    ({"eval_points": "4x1,4x1"}, "eval_points"), ({"problem": "memorisation", "eval_points": "3x2"}, "eval_points"),
    ({"eval_points": "0x1"}, "eval_points"),
])
def test_config_errors_name_the_field(fields, field):
    with pytest.raises(ValueError, match=f"L2EConfig.{field} = "):
        L2ETask(L2EConfig(**fields))


def test_points_parse_and_bad_ones_say_what_was_expected():
    assert parse_point(" 4x3 ") == (4, 3)
    with pytest.raises(ValueError, match="expected LENGTHxNESTING"):
        parse_point("4,3")
    with pytest.raises(ValueError, match=r"nesting in \[1, 10\]"):
        parse_point("4x11")


def test_the_task_is_registered_as_l2e():
    assert TASKS["l2e"] is L2ETask and L2ETask.output_kind == "classes"
