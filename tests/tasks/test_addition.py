import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from task_checks import check_bad_requests_refused, check_no_global_random_state, check_same_seed_same_batch

from diffvm.tasks.algorithmic import END, Addition, AdditionConfig
from diffvm.tasks.base import get_task

PERFECT_LOGIT = 20.0


def _numbers(batch, b: int) -> list[int]:
    """The numbers of sequence b, read back from its one-hot digit inputs (a plain loop)."""
    out = []
    for t in range(batch.inputs.shape[1]):
        step = batch.inputs[b, t].view(-1, 10)  # (D_max, 10)
        present = [int(row.argmax()) for row in step if row.sum() > 0]
        if present:
            out.append(int("".join(map(str, present))))
    return out


def _classes(batch, b: int, t: int, groups: int) -> list[int]:
    return batch.targets[b, t].view(groups, 11).argmax(-1).tolist()


def test_addition_shapes_and_groups_follow_the_paper_defaults():
    task = Addition()
    b = task.sample(np.random.default_rng(0), 7)
    assert (task.input_size, task.output_size, task.class_groups) == (50, 66, 6)
    assert b.inputs.shape[::2] == (7, 50) and b.targets.shape[::2] == (7, 66)
    assert 2 <= b.inputs.shape[1] <= 5
    assert get_task("addition") is Addition and task.splits == ("train", "numbers6-9")


def test_addition_targets_are_the_cumulative_sums_from_the_second_step():
    task = Addition()
    b = task.sample(np.random.default_rng(3), 16)
    for s in range(16):
        numbers = _numbers(b, s)
        assert 2 <= len(numbers) <= 5
        assert b.mask[s].tolist() == [0.0] + [1.0] * (len(numbers) - 1) + [0.0] * (b.mask.shape[1] - len(numbers))
        for t in range(1, len(numbers)):
            assert Addition.decode_sum(_classes(b, s, t, 6)) == sum(numbers[:t + 1])
        assert b.inputs[s, len(numbers):].abs().sum() == 0  # padding


def test_addition_digits_per_number_span_one_to_max_and_the_curriculum_limits_them():
    task = Addition()
    rng = np.random.default_rng(1)
    steps = task.sample(rng, 64).inputs.flatten(0, 1)  # (B·T, I)
    widths = {int((step.view(-1, 10).sum(-1) > 0).sum()) for step in steps if step.sum() > 0}
    assert widths == {1, 2, 3, 4, 5}
    low = task.sample(rng, 64, level=1)
    assert low.inputs.view(64, -1, 5, 10)[:, :, 2:].sum() == 0  # level 1: up to 2 digits
    assert task.levels == 5


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 999_999))
def test_sum_encoding_round_trips(total):
    task = Addition()
    classes = task.encode_sum(total)
    assert len(classes) == 6 and Addition.decode_sum(classes) == total
    assert classes[len(str(total)):] == [END] * (6 - len(str(total)))


def test_a_sum_wider_than_the_groups_is_refused():
    with pytest.raises(ValueError, match="more than G = 6 digits"):
        Addition().encode_sum(1_000_000)


def test_more_numbers_in_a_split_widen_the_sum():
    task = Addition(AdditionConfig(max_digits=2, eval_numbers="20-30"))
    assert task.class_groups == len(str(30 * 99)) == 4
    b = task.sample_split(np.random.default_rng(0), 3, "numbers20-30")
    assert 20 <= b.inputs.shape[1] <= 30 and b.targets.shape[-1] == 44


def test_perfect_logits_score_perfectly_and_one_wrong_digit_is_one_error():
    task = Addition()
    b = task.sample(np.random.default_rng(0), 4)
    logits = PERFECT_LOGIT * b.targets  # (B, T, O)
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0}
    scored = b.mask > 0
    assert torch.equal(task.predict(logits)[scored], b.targets[scored])
    wrong = logits.clone()
    t = int(b.mask[1].nonzero()[0])
    wrong[1, t, :11] = torch.roll(wrong[1, t, :11], 1)  # the first digit of one sum moved to another class
    m = task.metrics(wrong, b)
    assert m["exact"] == 0.75
    assert m["accuracy"] == pytest.approx(1 - 1 / (6 * b.mask.sum().item()))
    probs = task.probabilities(logits)
    assert torch.allclose(probs.view(*probs.shape[:2], 6, 11).sum(-1), torch.ones(*probs.shape[:2], 6))


def test_unscored_steps_do_not_count():
    task = Addition()
    b = task.sample(np.random.default_rng(0), 4)
    logits = PERFECT_LOGIT * b.targets
    logits[:, 0] = 0  # the first step has no target
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0}


def test_addition_is_seeded_and_reads_no_global_state(monkeypatch):
    task = Addition(AdditionConfig(max_digits=2, eval_numbers="6-7"))
    check_same_seed_same_batch(task)
    check_no_global_random_state(task, monkeypatch)
    check_bad_requests_refused(task, "numbers6-7")


@pytest.mark.parametrize("field,changes", [
    ("min_numbers", {"min_numbers": 1}),
    ("max_numbers", {"min_numbers": 4, "max_numbers": 3}),
    ("max_digits", {"max_digits": 0}),
    ("eval_numbers", {"eval_numbers": "1-3"}),
    ("eval_numbers", {"eval_numbers": "6"}),
])
def test_addition_config_errors_name_the_field(field, changes):
    bad = AdditionConfig(**changes)
    with pytest.raises(ValueError, match=re.escape(f"AdditionConfig.{field} = {getattr(bad, field)!r}: ")):
        Addition(bad)
