import argparse
import dataclasses
import re
from collections import Counter

import numpy as np
import pytest
import torch
from task_checks import check_bad_requests_refused, check_no_global_random_state, check_same_seed_same_batch

from diffvm.controllers.cli import add_config_arguments, config_from_args
from diffvm.tasks.algorithmic import Copy, CopyConfig, Parity, ParityConfig
from diffvm.tasks.base import SequenceTask, get_task

# Chi-square critical value for 3 degrees of freedom at p = 0.001 (fixed seeds: no flakes).
CHI2_3DOF_P001 = 16.27
PERFECT_LOGIT = 20.0  # ±20 from the targets: sigmoid within 2e-9 of the target bit


def _length(batch) -> int:
    """L of a copy batch, from T = 2L + 1."""
    return (batch.inputs.shape[1] - 1) // 2


def _nonzeros(batch) -> torch.Tensor:
    return (batch.inputs[:, 0] != 0).sum(-1)  # (B,)


# --- copy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,length,batch", [(8, 20, 4), (1, 1, 1), (3, 7, 5)], ids=["default", "ones", "primes"])
def test_copy_batch_shapes_and_dtypes(width, length, batch):
    task = Copy(CopyConfig(width=width, min_length=length, max_length=length))
    b = task.sample(np.random.default_rng(0), batch)
    steps = 2 * length + 1
    assert (task.input_size, task.output_size) == (width + 1, width)
    assert b.inputs.shape == (batch, steps, width + 1)
    assert b.targets.shape == (batch, steps, width)
    assert b.mask.shape == (batch, steps)
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}
    assert all(torch.isfinite(x).all() for x in b)


def test_copy_layout_of_a_two_vector_episode():
    b = Copy(CopyConfig(width=2, min_length=2, max_length=2)).sample(np.random.default_rng(3), 4)
    # steps: x0, x1, delimiter, answer x0, answer x1
    assert b.inputs[:, :, 2].tolist() == [[0, 0, 1, 0, 0]] * 4  # the delimiter flag
    assert b.mask.tolist() == [[0, 0, 0, 1, 1]] * 4
    assert (b.inputs[:, 2:, :2] == 0).all()  # no data on the delimiter nor while answering
    assert (b.targets[:, :3] == 0).all()  # nothing to output before the delimiter has passed
    assert torch.equal(b.targets[:, 3:], b.inputs[:, :2, :2])
    assert set(b.inputs[:, :2, :2].flatten().tolist()) <= {0.0, 1.0}


def test_copy_targets_are_the_input_vectors_after_the_delimiter():
    task = Copy(CopyConfig(width=3, min_length=1, max_length=6))
    for seed in range(5):
        b = task.sample(np.random.default_rng(seed), 3)
        length, width = _length(b), 3
        for i in range(3):
            for t in range(2 * length + 1):
                answering = t > length
                expected = b.inputs[i, t - length - 1, :width] if answering else torch.zeros(width)
                assert torch.equal(b.targets[i, t], expected), (seed, i, t)
                assert b.mask[i, t] == float(answering)
                assert b.inputs[i, t, width] == float(t == length)


def test_copy_bits_are_fair_coins():
    b = Copy().sample_split(np.random.default_rng(0), 64, "length20")
    bits = b.inputs[:, :20, :8]
    assert 0.48 < bits.mean().item() < 0.52  # 10240 bits: 4 standard deviations is ±0.02


def test_copy_draws_one_length_per_batch_uniform_over_the_training_range():
    task = Copy(CopyConfig(width=1, min_length=2, max_length=5))
    rng = np.random.default_rng(0)
    counts = Counter(_length(task.sample(rng, 2)) for _ in range(400))
    assert set(counts) == {2, 3, 4, 5}
    assert sum((c - 100) ** 2 / 100 for c in counts.values()) < CHI2_3DOF_P001, counts


def test_copy_splits_have_exactly_their_length():
    task = Copy(CopyConfig(width=2, eval_lengths="3, 11,7"))
    assert task.splits == ("train", "length3", "length11", "length7")
    rng = np.random.default_rng(0)
    for split, length in [("length3", 3), ("length11", 11), ("length7", 7)]:
        b = task.sample_split(rng, 2, split)
        assert _length(b) == length and b.mask.sum().item() == 2 * length
    assert all(1 <= _length(task.sample_split(rng, 1, "train")) <= 20 for _ in range(20))


@pytest.mark.parametrize("min_length,max_length,step", [(1, 20, 4), (3, 10, 4), (5, 5, 2), (2, 9, 7)])
def test_copy_curriculum_grows_the_longest_length_up_to_the_full_range(min_length, max_length, step):
    task = Copy(CopyConfig(width=1, min_length=min_length, max_length=max_length, curriculum_step=step))
    ranges = [task.knob_range(k) for k in range(task.levels)]
    assert ranges == [(min_length, min(min_length + k * step, max_length)) for k in range(task.levels)]
    assert ranges[-1] == (min_length, max_length) == task.knob_range(None)
    assert all(a[1] < b[1] for a, b in zip(ranges, ranges[1:]))  # strictly: no level repeats another
    rng = np.random.default_rng(0)
    for k, (lo, hi) in enumerate(ranges):
        lengths = {_length(task.sample(rng, 1, level=k)) for _ in range(200)}
        assert lengths == set(range(lo, hi + 1)), k


def test_copy_default_curriculum_has_six_levels():
    assert [Copy().knob_range(k)[1] for k in range(Copy().levels)] == [1, 5, 9, 13, 17, 20]


# --- parity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,batch", [(64, 4), (1, 1), (7, 3)], ids=["default", "ones", "primes"])
def test_parity_batch_shapes_and_dtypes(size, batch):
    task = Parity(ParityConfig(size=size, max_ones=size))
    b = task.sample(np.random.default_rng(0), batch)
    assert (task.input_size, task.output_size, task.levels) == (size, 1, 1)
    assert b.inputs.shape == (batch, 1, size)
    assert b.targets.shape == (batch, 1, 1)
    assert b.mask.tolist() == [[1.0]] * batch
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}


def test_parity_target_is_the_parity_of_the_plus_ones():
    task = Parity(ParityConfig(size=9, min_ones=2, max_ones=7))
    b = task.sample(np.random.default_rng(1), 200)
    for i in range(200):
        plus, nonzero = 0, 0
        for x in b.inputs[i, 0].tolist():
            assert x in (-1.0, 0.0, 1.0)
            plus += x == 1.0
            nonzero += x != 0.0
        assert b.targets[i, 0, 0].item() == plus % 2
        assert 2 <= nonzero <= 7


def test_parity_counts_positions_and_signs_are_uniform():
    b = Parity(ParityConfig(size=4, min_ones=1, max_ones=4)).sample(np.random.default_rng(2), 400)
    counts = Counter(_nonzeros(b).tolist())
    assert set(counts) == {1, 2, 3, 4}
    assert sum((c - 100) ** 2 / 100 for c in counts.values()) < CHI2_3DOF_P001, counts
    x = b.inputs[:, 0]
    per_position = (x != 0).sum(0).float() / (x != 0).sum()  # each position equally likely
    assert torch.allclose(per_position, torch.full((4,), 0.25), atol=0.04)
    assert 0.45 < ((x == 1).sum() / (x != 0).sum()).item() < 0.55
    assert 0.4 < b.targets.mean().item() < 0.6


def test_parity_extra_splits_draw_their_ranges_as_in_pondernet():
    task = Parity(ParityConfig(size=96, max_ones=48, eval_ones="49-96, 3-3"))
    assert task.splits == ("train", "ones49-96", "ones3-3")
    rng = np.random.default_rng(0)
    train, hard, three = (task.sample_split(rng, 100, s) for s in task.splits)
    assert 1 <= _nonzeros(train).min() and _nonzeros(train).max() <= 48
    assert 49 <= _nonzeros(hard).min() and _nonzeros(hard).max() <= 96
    assert (_nonzeros(three) == 3).all()
    assert Parity().splits == ("train",)


# --- both ---------------------------------------------------------------------------------------

TASKS = {
    "copy": (Copy(CopyConfig(width=3, max_length=6, eval_lengths="9")), "length9"),
    "parity": (Parity(ParityConfig(size=10, max_ones=10, eval_ones="5-10")), "ones5-10"),
}


@pytest.mark.parametrize("name", TASKS)
def test_the_same_seed_gives_the_same_batch(name):
    check_same_seed_same_batch(TASKS[name][0])


@pytest.mark.parametrize("name", TASKS)
def test_no_global_random_state_is_read(name, monkeypatch):
    check_no_global_random_state(TASKS[name][0], monkeypatch)


@pytest.mark.parametrize("name", TASKS)
def test_bad_batch_size_split_or_level_is_refused(name):
    check_bad_requests_refused(*TASKS[name])


@pytest.mark.parametrize("name", TASKS)
def test_get_task_finds_the_class(name):
    task, _ = TASKS[name]
    assert get_task(name) is type(task) and issubclass(type(task), SequenceTask)
    assert type(task).output_kind == "bits"


@pytest.mark.parametrize("name", TASKS)
def test_perfect_logits_score_perfectly_and_one_flipped_bit_is_one_error(name):
    task, split = TASKS[name]
    b = task.sample_split(np.random.default_rng(0), 4, split)
    logits = PERFECT_LOGIT * (2 * b.targets - 1)  # (B, T, O)
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"bit_errors": 0.0, "exact": 1.0}
    flipped = logits.clone()
    t = int(b.mask[2].nonzero()[-1])  # a scored step of sequence 2
    flipped[2, t, 0] *= -1
    assert task.loss(flipped, b)[2].item() > PERFECT_LOGIT - 1e-3
    assert task.metrics(flipped, b) == {"bit_errors": 0.25, "exact": 0.75}


def test_copy_outputs_before_the_delimiter_are_not_scored():
    task, split = TASKS["copy"]
    b = task.sample_split(np.random.default_rng(0), 4, split)
    logits = PERFECT_LOGIT * (2 * b.targets - 1)
    logits[:, :10] = PERFECT_LOGIT  # all wrong where targets are 0 and nothing is scored
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"bit_errors": 0.0, "exact": 1.0}


# --- configs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("config,field,changes", [
    (CopyConfig, "width", {"width": 0}),
    (CopyConfig, "min_length", {"min_length": 0}),
    (CopyConfig, "max_length", {"min_length": 5, "max_length": 4}),
    (CopyConfig, "curriculum_step", {"curriculum_step": 0}),
    (CopyConfig, "eval_lengths", {"eval_lengths": "20,x"}),
    (CopyConfig, "eval_lengths", {"eval_lengths": "20,,40"}),
    (CopyConfig, "eval_lengths", {"eval_lengths": "0"}),
    (CopyConfig, "eval_lengths", {"eval_lengths": "-3"}),
    (CopyConfig, "eval_lengths", {"eval_lengths": "20,20"}),
    (ParityConfig, "size", {"size": 0}),
    (ParityConfig, "min_ones", {"min_ones": 0}),
    (ParityConfig, "min_ones", {"min_ones": 65}),
    (ParityConfig, "max_ones", {"max_ones": 65}),
    (ParityConfig, "max_ones", {"min_ones": 5, "max_ones": 4}),
    (ParityConfig, "eval_ones", {"eval_ones": "49"}),
    (ParityConfig, "eval_ones", {"eval_ones": "0-3"}),
    (ParityConfig, "eval_ones", {"eval_ones": "5-4"}),
    (ParityConfig, "eval_ones", {"eval_ones": "1-65"}),
    (ParityConfig, "eval_ones", {"eval_ones": "1-2,1-2"}),
], ids=lambda x: x.__name__ if isinstance(x, type) else x if isinstance(x, str) else repr(x))
def test_config_errors_name_the_field(config, field, changes):
    bad = config(**changes)
    message = re.escape(f"{config.__name__}.{field} = {getattr(bad, field)!r}: ")
    with pytest.raises(ValueError, match=message):
        bad.validate()
    task = Copy if config is CopyConfig else Parity
    with pytest.raises(ValueError, match=message):
        task(bad)


def test_default_configs_are_valid_and_a_task_refuses_the_other_tasks_config():
    CopyConfig().validate()
    ParityConfig().validate()
    with pytest.raises(TypeError, match="needs a CopyConfig, got ParityConfig"):
        Copy(ParityConfig())


@pytest.mark.parametrize("config,argv,expected", [
    (CopyConfig, ["--eval-lengths", "30,50", "--max-length", "10"], CopyConfig(eval_lengths="30,50", max_length=10)),
    (ParityConfig, ["--size", "96", "--max-ones", "48", "--eval-ones", "49-96"],
     ParityConfig(size=96, max_ones=48, eval_ones="49-96")),
])
def test_the_command_line_is_generated_from_the_config_comments(config, argv, expected):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, config)
    names = {f.name for f in dataclasses.fields(config)}
    helps = {a.dest: a.help for a in parser._actions if a.dest in names}
    assert set(helps) == names
    assert all(not h.startswith("(default") for h in helps.values()), helps  # every field has a comment
    assert config_from_args(config, parser.parse_args(argv)) == expected
