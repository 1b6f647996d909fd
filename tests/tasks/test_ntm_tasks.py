import argparse
import dataclasses
import json
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch
from task_checks import check_bad_requests_refused, check_no_global_random_state, check_same_seed_same_batch

from diffvm.controllers.cli import add_config_arguments, config_from_args
from diffvm.controllers.model import ModelConfig
from diffvm.controllers.trainer import TrainConfig, run_config, train
from diffvm.tasks.base import SequenceTask, get_task
from diffvm.tasks.ntm_tasks import (
    AssociativeRecall,
    AssociativeRecallConfig,
    PrioritySort,
    PrioritySortConfig,
    RepeatCopy,
    RepeatCopyConfig,
)

# Chi-square critical values at p = 0.001 (fixed seeds: no flakes).
CHI2_2DOF_P001 = 13.82
CHI2_3DOF_P001 = 16.27
PERFECT_LOGIT = 20.0  # ±20 from the targets: sigmoid within 2e-9 of the target bit


def _repeat_copy_shape(batch, width: int) -> tuple[int, int]:
    """(L, c) of a repeat-copy batch: L from the delimiter's step, c from T = L + 1 + c·L + 1."""
    length = int(batch.inputs[0, :, width].nonzero()[0])
    return length, (batch.inputs.shape[1] - length - 2) // length


def _recall_items(batch, width: int) -> int:
    """n of an associative-recall batch: its number of item delimiters."""
    return int(batch.inputs[0, :, width].sum())


# --- repeat copy -------------------------------------------------------------------------------


@pytest.mark.parametrize("width,length,repeats,batch", [(8, 10, 10, 4), (1, 1, 1, 1), (3, 7, 5, 2)],
                         ids=["default", "ones", "primes"])
def test_repeat_copy_batch_shapes_and_dtypes(width, length, repeats, batch):
    task = RepeatCopy(RepeatCopyConfig(width=width, min_length=length, max_length=length, min_repeats=repeats,
                                       max_repeats=repeats))
    b = task.sample(np.random.default_rng(0), batch)
    steps = length + 1 + repeats * length + 1
    assert (task.input_size, task.output_size) == (width + 2, width + 1)
    assert b.inputs.shape == (batch, steps, width + 2)
    assert b.targets.shape == (batch, steps, width + 1)
    assert b.mask.shape == (batch, steps)
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}
    assert all(torch.isfinite(x).all() for x in b)


def test_repeat_copy_layout_of_two_vectors_repeated_three_times():
    task = RepeatCopy(RepeatCopyConfig(width=1, min_length=2, max_length=2, max_repeats=3, eval_repeats="3"))
    b = task.sample_split(np.random.default_rng(4), 3, "repeats3")
    count = 1 / math.sqrt(2 / 3)  # c = 3 over training counts 1…3: μ = 2, σ² = (3² − 1) / 12
    # steps: x0, x1, delimiter + count, x0 x1 x0 x1 x0 x1, end marker
    assert b.inputs[:, :, 1].tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]] * 3
    assert torch.allclose(b.inputs[:, :, 2], torch.tensor([0, 0, count, 0, 0, 0, 0, 0, 0, 0]).expand(3, -1))
    assert b.mask.tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1]] * 3
    assert b.targets[:, :, 1].tolist() == [[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]] * 3
    assert (b.inputs[:, 2:, 0] == 0).all() and (b.targets[:, :3] == 0).all()
    assert torch.equal(b.targets[:, 3:9, 0], b.inputs[:, :2, 0].repeat(1, 3))


def test_repeat_copy_targets_follow_the_papers_description():
    task = RepeatCopy(RepeatCopyConfig(width=3, max_length=4, min_repeats=2, max_repeats=4))
    for seed in range(4):
        b = task.sample(np.random.default_rng(seed), 2)
        length, repeats = _repeat_copy_shape(b, 3)
        for i in range(2):
            for t in range(b.inputs.shape[1]):
                expected = [0.0] * 4
                if length < t <= length + repeats * length:  # the copies, one after another
                    expected[:3] = b.inputs[i, (t - length - 1) % length, :3].tolist()
                if t == length + repeats * length + 1:
                    expected[3] = 1.0  # the end marker
                assert b.targets[i, t].tolist() == expected, (seed, i, t)
                assert b.mask[i, t] == float(t > length)
                assert b.inputs[i, t, 3] == float(t == length)
                assert b.inputs[i, t, 4].item() == pytest.approx(task.count_input(repeats) if t == length else 0)


@pytest.mark.parametrize("lo,hi", [(1, 10), (2, 5), (3, 4)])
def test_repeat_count_is_normalised_to_mean_zero_variance_one_over_the_training_counts(lo, hi):
    task = RepeatCopy(RepeatCopyConfig(min_repeats=lo, max_repeats=hi))
    counts = np.array([task.count_input(c) for c in range(lo, hi + 1)])
    assert counts.mean() == pytest.approx(0, abs=1e-12) and counts.var() == pytest.approx(1)
    assert all(a < b for a, b in zip(counts, counts[1:]))


def test_repeat_count_of_a_single_training_count_is_centred():
    task = RepeatCopy(RepeatCopyConfig(min_repeats=4, max_repeats=4, eval_repeats="6"))
    assert (task.count_input(4), task.count_input(6)) == (0.0, 2.0)
    assert task.sample(np.random.default_rng(0), 2).inputs[:, :, -1].abs().max().item() == 0


def test_repeat_copy_draws_length_and_count_once_per_batch_uniformly():
    task = RepeatCopy(RepeatCopyConfig(width=1, min_length=2, max_length=5, min_repeats=1, max_repeats=4))
    rng = np.random.default_rng(0)
    shapes = [_repeat_copy_shape(task.sample(rng, 2), 1) for _ in range(400)]
    for counts in (Counter(s[0] for s in shapes), Counter(s[1] for s in shapes)):
        assert len(counts) == 4
        assert sum((c - 100) ** 2 / 100 for c in counts.values()) < CHI2_3DOF_P001, counts


def test_repeat_copy_splits_fix_the_length_or_the_count_and_draw_the_other_as_in_training():
    task = RepeatCopy(RepeatCopyConfig(width=2, max_length=4, max_repeats=3, eval_lengths="7,2",
                                       eval_repeats="9"))
    assert task.splits == ("train", "length7", "length2", "repeats9")
    rng = np.random.default_rng(0)
    for split, length, repeats in [("length7", 7, None), ("length2", 2, None), ("repeats9", None, 9)]:
        seen = {_repeat_copy_shape(task.sample_split(rng, 2, split), 2) for _ in range(60)}
        if length is None:
            assert seen == {(n, repeats) for n in range(1, 5)}, split
        else:
            assert seen == {(length, c) for c in range(1, 4)}, split
    seen = {_repeat_copy_shape(task.sample_split(rng, 1, "train"), 2) for _ in range(100)}
    assert seen == {(n, c) for n in range(1, 5) for c in range(1, 4)}


@pytest.mark.parametrize("min_length,max_length,step", [(1, 10, 3), (2, 9, 7), (5, 5, 2)])
def test_repeat_copy_curriculum_grows_the_longest_length_up_to_the_full_range(min_length, max_length, step):
    task = RepeatCopy(RepeatCopyConfig(width=1, min_length=min_length, max_length=max_length, max_repeats=2,
                                       curriculum_step=step))
    ranges = [task.length_range(k) for k in range(task.levels)]
    assert ranges == [(min_length, min(min_length + k * step, max_length)) for k in range(task.levels)]
    assert ranges[-1] == (min_length, max_length) == task.length_range(None)
    assert all(a[1] < b[1] for a, b in zip(ranges, ranges[1:]))
    rng = np.random.default_rng(0)
    for k, (lo, hi) in enumerate(ranges):
        seen = {_repeat_copy_shape(task.sample(rng, 1, level=k), 1) for _ in range(100)}
        assert seen == {(n, c) for n in range(lo, hi + 1) for c in (1, 2)}, k


def test_repeat_copy_defaults_are_the_papers():
    task = RepeatCopy()
    assert (task.length_range(), task.levels, task.splits) == ((1, 10), 4, ("train", "length20", "repeats20"))
    assert (task.config.min_repeats, task.config.max_repeats, task.config.width) == (1, 10, 8)


# --- associative recall ------------------------------------------------------------------------


@pytest.mark.parametrize("width,item_length,items,batch", [(6, 3, 6, 4), (1, 1, 2, 1), (5, 2, 3, 3)],
                         ids=["default", "ones", "primes"])
def test_associative_recall_batch_shapes_and_dtypes(width, item_length, items, batch):
    task = AssociativeRecall(AssociativeRecallConfig(width=width, item_length=item_length, min_items=items,
                                                     max_items=items))
    b = task.sample(np.random.default_rng(0), batch)
    steps = items * (item_length + 1) + (item_length + 1) + item_length
    assert (task.input_size, task.output_size) == (width + 2, width)
    assert b.inputs.shape == (batch, steps, width + 2)
    assert b.targets.shape == (batch, steps, width)
    assert b.mask.shape == (batch, steps)
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}


def test_associative_recall_layout_of_three_one_vector_items():
    task = AssociativeRecall(AssociativeRecallConfig(width=2, item_length=1, min_items=3, max_items=3))
    b = task.sample(np.random.default_rng(1), 8)
    # steps: delimiter, item 0, delimiter, item 1, delimiter, item 2, query delimiter, query, answer
    assert b.inputs[:, :, 2].tolist() == [[1, 0, 1, 0, 1, 0, 0, 0, 0]] * 8
    assert b.inputs[:, :, 3].tolist() == [[0, 0, 0, 0, 0, 0, 1, 0, 0]] * 8
    assert b.mask.tolist() == [[0, 0, 0, 0, 0, 0, 0, 0, 1]] * 8
    assert (b.inputs[:, [0, 2, 4, 6, 8], :2] == 0).all() and (b.targets[:, :8] == 0).all()
    items, query, answer = b.inputs[:, [1, 3, 5], :2], b.inputs[:, 7, :2], b.targets[:, 8]
    for i in range(8):  # the answer follows an item equal to the query, never the last one
        followers = [items[i, j + 1].tolist() for j in range(2) if torch.equal(items[i, j], query[i])]
        assert answer[i].tolist() in followers, i


def test_associative_recall_targets_follow_the_papers_description():
    width, k = 6, 3
    task = AssociativeRecall(AssociativeRecallConfig(width=width, item_length=k, min_items=2, max_items=6))
    chosen = Counter()
    for seed in range(30):
        b = task.sample(np.random.default_rng(seed), 4)
        n = _recall_items(b, width)
        for i in range(4):
            items = [b.inputs[i, j * (k + 1) + 1:(j + 1) * (k + 1), :width] for j in range(n)]
            query_at = n * (k + 1)
            assert b.inputs[i, :, width + 1].nonzero().flatten().tolist() == [query_at]
            query = b.inputs[i, query_at + 1:query_at + 1 + k, :width]
            matches = [j for j in range(n - 1) if torch.equal(items[j], query)]
            assert len(matches) == 1, (seed, i)  # 18 random bits an item: no two equal at these seeds
            q = matches[0]
            expected = torch.zeros(b.targets.shape[1:])
            expected[query_at + k + 1:] = items[q + 1]
            assert torch.equal(b.targets[i], expected), (seed, i)
            assert b.mask[i].tolist() == [float(t > query_at + k) for t in range(b.inputs.shape[1])]
            if n == 4:
                chosen[q] += 1
    assert set(chosen) == {0, 1, 2}  # uniform among all but the last item
    expected_each = sum(chosen.values()) / 3
    assert sum((c - expected_each) ** 2 / expected_each for c in chosen.values()) < CHI2_2DOF_P001, chosen


def test_associative_recall_query_is_uniform_among_all_but_the_last_item():
    task = AssociativeRecall(AssociativeRecallConfig(width=8, item_length=2, min_items=4, max_items=4))
    b = task.sample(np.random.default_rng(0), 300)
    items = b.inputs[:, :12].reshape(300, 4, 3, 10)[:, :, 1:, :8]  # (B, n, k, width)
    query = b.inputs[:, 13:15, :8]  # (B, k, width)
    matches = (items == query[:, None]).all(-1).all(-1)  # (B, n)
    assert (matches.sum(1) >= 1).all()
    counts = Counter(int(row.nonzero()[0]) for row in matches)
    assert set(counts) == {0, 1, 2}, counts
    assert sum((c - 100) ** 2 / 100 for c in counts.values()) < CHI2_2DOF_P001, counts


def test_associative_recall_splits_and_levels_draw_their_item_counts():
    task = AssociativeRecall(AssociativeRecallConfig(width=1, item_length=1, max_items=6, eval_items="12, 3"))
    assert task.splits == ("train", "items12", "items3")
    assert [task.knob_range(k) for k in range(task.levels)] == [(2, 2), (2, 3), (2, 4), (2, 5), (2, 6)]
    rng = np.random.default_rng(0)
    for k in range(task.levels):
        assert {_recall_items(task.sample(rng, 1, level=k), 1) for _ in range(80)} == set(range(2, k + 3)), k
    assert {_recall_items(task.sample_split(rng, 1, "train"), 1) for _ in range(80)} == set(range(2, 7))
    assert _recall_items(task.sample_split(rng, 2, "items12"), 1) == 12
    assert _recall_items(task.sample_split(rng, 2, "items3"), 1) == 3
    stepped = AssociativeRecall(AssociativeRecallConfig(min_items=2, max_items=7, curriculum_step=2))
    assert [stepped.knob_range(k)[1] for k in range(stepped.levels)] == [2, 4, 6, 7]


# --- priority sort -----------------------------------------------------------------------------


@pytest.mark.parametrize("width,count,keep,batch", [(8, 20, 16, 4), (1, 1, 1, 1), (3, 7, 5, 2)],
                         ids=["default", "ones", "primes"])
def test_priority_sort_batch_shapes_and_dtypes(width, count, keep, batch):
    task = PrioritySort(PrioritySortConfig(width=width, count=count, keep=keep))
    b = task.sample(np.random.default_rng(0), batch)
    steps = count + 1 + keep
    assert (task.input_size, task.output_size, task.levels, task.splits) == (width + 2, width, 1, ("train",))
    assert b.inputs.shape == (batch, steps, width + 2)
    assert b.targets.shape == (batch, steps, width)
    assert b.mask.shape == (batch, steps)
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}


def test_priority_sort_layout_of_three_vectors_keeping_two():
    b = PrioritySort(PrioritySortConfig(width=2, count=3, keep=2)).sample(np.random.default_rng(2), 5)
    # steps: x0 p0, x1 p1, x2 p2, delimiter, highest, second highest
    assert b.inputs[:, :, 3].tolist() == [[0, 0, 0, 1, 0, 0]] * 5
    assert b.mask.tolist() == [[0, 0, 0, 0, 1, 1]] * 5
    assert (b.inputs[:, 3:, :3] == 0).all() and (b.targets[:, :4] == 0).all()
    for i in range(5):
        p = b.inputs[i, :3, 2].tolist()
        low = p.index(min(p))
        kept = [j for j in sorted(range(3), key=lambda j: -p[j]) if j != low]
        assert b.targets[i, 4:].tolist() == [b.inputs[i, j, :2].tolist() for j in kept], i


def test_priority_sort_targets_follow_the_papers_description():
    width, count, keep = 4, 9, 6
    task = PrioritySort(PrioritySortConfig(width=width, count=count, keep=keep))
    b = task.sample(np.random.default_rng(3), 20)
    for i in range(20):
        pairs = [(b.inputs[i, t, width].item(), b.inputs[i, t, :width].tolist()) for t in range(count)]
        ranked = sorted(pairs, key=lambda pair: pair[0], reverse=True)[:keep]  # highest priority first
        expected = [[0.0] * width] * (count + 1) + [vector for _, vector in ranked]
        assert b.targets[i].tolist() == expected, i
        assert b.mask[i].tolist() == [0.0] * (count + 1) + [1.0] * keep


def test_priorities_are_uniform_in_minus_one_to_one():
    b = PrioritySort().sample(np.random.default_rng(0), 100)
    p = b.inputs[:, :20, 8]  # (B, n) 2000 priorities
    assert -1 <= p.min().item() and p.max().item() <= 1
    quarters = torch.histc(p, bins=4, min=-1, max=1)
    assert sum((c - 500) ** 2 / 500 for c in quarters.tolist()) < CHI2_3DOF_P001, quarters
    assert 0.48 < b.inputs[:, :20, :8].mean().item() < 0.52  # fair-coin bits


# --- all three ---------------------------------------------------------------------------------

TASKS = {
    "repeat_copy": (RepeatCopy(RepeatCopyConfig(width=3, max_length=4, max_repeats=3, eval_lengths="6",
                                                eval_repeats="5")), "repeats5"),
    "associative_recall": (AssociativeRecall(AssociativeRecallConfig(width=3, item_length=2, max_items=4,
                                                                     eval_items="7")), "items7"),
    "priority_sort": (PrioritySort(PrioritySortConfig(width=3, count=6, keep=4)), "train"),
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
    unscored = logits.clone()
    unscored[b.mask == 0] = -unscored[b.mask == 0]  # every bit wrong where nothing is scored
    assert task.metrics(unscored, b) == {"bit_errors": 0.0, "exact": 1.0}


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("config,field,changes", [
    (RepeatCopyConfig, "width", {"width": 0}),
    (RepeatCopyConfig, "min_length", {"min_length": 0}),
    (RepeatCopyConfig, "max_length", {"min_length": 5, "max_length": 4}),
    (RepeatCopyConfig, "min_repeats", {"min_repeats": 0}),
    (RepeatCopyConfig, "max_repeats", {"min_repeats": 5, "max_repeats": 4}),
    (RepeatCopyConfig, "curriculum_step", {"curriculum_step": 0}),
    (RepeatCopyConfig, "eval_lengths", {"eval_lengths": "20,x"}),
    (RepeatCopyConfig, "eval_repeats", {"eval_repeats": "0"}),
    (RepeatCopyConfig, "eval_repeats", {"eval_repeats": "20,20"}),
    (AssociativeRecallConfig, "width", {"width": 0}),
    (AssociativeRecallConfig, "item_length", {"item_length": 0}),
    (AssociativeRecallConfig, "min_items", {"min_items": 1}),
    (AssociativeRecallConfig, "max_items", {"min_items": 5, "max_items": 4}),
    (AssociativeRecallConfig, "curriculum_step", {"curriculum_step": 0}),
    (AssociativeRecallConfig, "eval_items", {"eval_items": "12,1"}),
    (AssociativeRecallConfig, "eval_items", {"eval_items": "-3"}),
    (PrioritySortConfig, "width", {"width": 0}),
    (PrioritySortConfig, "count", {"count": 0}),
    (PrioritySortConfig, "keep", {"keep": 0}),
    (PrioritySortConfig, "keep", {"count": 5, "keep": 6}),
], ids=lambda x: x.__name__ if isinstance(x, type) else x if isinstance(x, str) else repr(x))
def test_config_errors_name_the_field(config, field, changes):
    bad = config(**changes)
    message = re.escape(f"{config.__name__}.{field} = {getattr(bad, field)!r}: ")
    with pytest.raises(ValueError, match=message):
        bad.validate()
    task = {RepeatCopyConfig: RepeatCopy, AssociativeRecallConfig: AssociativeRecall,
            PrioritySortConfig: PrioritySort}[config]
    with pytest.raises(ValueError, match=message):
        task(bad)


def test_default_configs_are_valid_and_a_task_refuses_another_tasks_config():
    for config in (RepeatCopyConfig, AssociativeRecallConfig, PrioritySortConfig):
        config().validate()
    with pytest.raises(TypeError, match="needs a PrioritySortConfig, got RepeatCopyConfig"):
        PrioritySort(RepeatCopyConfig())


@pytest.mark.parametrize("config,argv,expected", [
    (RepeatCopyConfig, ["--eval-repeats", "15,20", "--max-length", "5"],
     RepeatCopyConfig(eval_repeats="15,20", max_length=5)),
    (AssociativeRecallConfig, ["--item-length", "2", "--eval-items", "9"],
     AssociativeRecallConfig(item_length=2, eval_items="9")),
    (PrioritySortConfig, ["--count", "10", "--keep", "5"], PrioritySortConfig(count=10, keep=5)),
], ids=lambda x: x.__name__ if isinstance(x, type) else None)
def test_the_command_line_is_generated_from_the_config_comments(config, argv, expected):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, config)
    names = {f.name for f in dataclasses.fields(config)}
    helps = {a.dest: a.help for a in parser._actions if a.dest in names}
    assert set(helps) == names
    assert all(not h.startswith("(default") for h in helps.values()), helps  # every field has a comment
    assert config_from_args(config, parser.parse_args(argv)) == expected


# --- training ----------------------------------------------------------------------------------


def test_each_task_trains_a_tiny_ntm_for_twenty_updates(tmp_path):
    configs = {
        "repeat_copy": RepeatCopyConfig(width=2, max_length=3, max_repeats=2, eval_lengths="4", eval_repeats="3"),
        "associative_recall": AssociativeRecallConfig(width=2, item_length=1, max_items=3, eval_items="4"),
        "priority_sort": PrioritySortConfig(width=2, count=4, keep=3),
    }
    for name, task_config in configs.items():
        config = run_config(name, task_config, ModelConfig(hidden=8, memory="ntm", memory_slots=6, memory_width=4),
                            TrainConfig(updates=20, batch=4, eval_batch=4, log_every=5, eval_every=20,
                                        checkpoint_every=20))
        train(config, tmp_path / name, quiet=True)
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["update"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20], name
        assert {r["split"] for r in records if r["kind"] == "eval"} == set(get_task(name)(task_config).splits)
        assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train"), name
        assert all(math.isfinite(r[mode]["bit_errors"]) for r in records if r["kind"] == "eval"
                   for mode in ("soft", "hard")), name
