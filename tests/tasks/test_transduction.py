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
from diffvm.tasks.transduction import BigramFlip, Reversal, SymbolCopy, Transduction, TransductionConfig

# Chi-square critical values at p = 0.001 (fixed seeds: no flakes).
CHI2_3DOF_P001 = 16.27
CHI2_4DOF_P001 = 18.47
PERFECT_LOGIT = 20.0  # the target class 20 above the others: its probability within 1e-7 of 1
CLASSES = {"symbol_copy": SymbolCopy, "reversal": Reversal, "bigram_flip": BigramFlip}
# Small enough for the smoke test: T ≤ 2·8 + 1 = 17 steps.
TINY = TransductionConfig(vocabulary=5, min_length=2, max_length=4, eval_max_length=8, curriculum_step=2)


def _length(batch) -> int:
    """L of a batch, from T = 2L + 1."""
    return (batch.inputs.shape[1] - 1) // 2


def _source(batch) -> list[list[int]]:
    """The source symbols of each sequence, read back from the one-hot inputs."""
    return batch.inputs[:, :_length(batch), :-1].argmax(-1).tolist()


def _expected_target(name: str, source: list[int]) -> list[int]:
    """The paper's description as a plain loop."""
    target = []
    for t in range(len(source)):
        if name == "symbol_copy":
            target.append(source[t])
        elif name == "reversal":
            target.append(source[len(source) - 1 - t])
        else:  # bigram_flip: s1 s2 s3 s4 … → s2 s1 s4 s3 …
            target.append(source[t + 1] if t % 2 == 0 else source[t - 1])
    return target


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("vocabulary,length,batch", [(128, 8, 4), (1, 2, 1), (7, 6, 3)],
                         ids=["default", "ones", "primes"])
def test_batch_shapes_and_dtypes(name, vocabulary, length, batch):
    task = CLASSES[name](TransductionConfig(vocabulary=vocabulary, min_length=length, max_length=length))
    b = task.sample(np.random.default_rng(0), batch)
    steps = 2 * length + 1
    assert (task.input_size, task.output_size) == (vocabulary + 1, vocabulary)
    assert b.inputs.shape == (batch, steps, vocabulary + 1)
    assert b.targets.shape == (batch, steps, vocabulary)
    assert b.mask.shape == (batch, steps)
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}
    assert (b.targets.sum(-1) == 1).all() and set(b.targets.unique().tolist()) <= {0.0, 1.0}  # one-hot


def test_layout_of_a_four_symbol_reversal():
    b = Reversal(TransductionConfig(vocabulary=3, min_length=4, max_length=4)).sample(np.random.default_rng(3), 2)
    # steps: s1 s2 s3 s4, delimiter, answer s4 s3 s2 s1
    assert b.inputs[:, :, 3].tolist() == [[0, 0, 0, 0, 1, 0, 0, 0, 0]] * 2  # the delimiter flag
    assert b.mask.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1]] * 2
    assert (b.inputs[:, :4, :3].sum(-1) == 1).all()  # one symbol a source step
    assert (b.inputs[:, 4:, :3] == 0).all()  # no symbol on the delimiter nor while answering
    assert (b.targets[:, :5].argmax(-1) == 0).all()  # the unscored placeholder class
    assert torch.equal(b.targets[:, 5:], b.inputs[:, :4, :3].flip(1))


@pytest.mark.parametrize("name", CLASSES)
def test_targets_follow_the_papers_description(name):
    task = CLASSES[name](TransductionConfig(vocabulary=6, min_length=2, max_length=10, curriculum_step=2))
    for seed in range(5):
        b = task.sample(np.random.default_rng(seed), 3)
        length = _length(b)
        for i, source in enumerate(_source(b)):
            expected = _expected_target(name, source)
            for t in range(2 * length + 1):
                answering = t > length
                assert b.mask[i, t] == float(answering)
                assert b.inputs[i, t, 6] == float(t == length)
                if answering:
                    assert b.targets[i, t].argmax().item() == expected[t - length - 1], (seed, i, t)


def test_answer_orders_are_the_three_reorderings():
    assert SymbolCopy().answer_order(4).tolist() == [0, 1, 2, 3]
    assert Reversal().answer_order(4).tolist() == [3, 2, 1, 0]
    assert BigramFlip().answer_order(6).tolist() == [1, 0, 3, 2, 5, 4]


def test_symbols_are_uniform_over_the_vocabulary():
    b = SymbolCopy(TransductionConfig(vocabulary=5, min_length=20, max_length=20)).sample(np.random.default_rng(0), 50)
    counts = Counter(sum(_source(b), []))  # 1000 symbols, 200 expected each
    assert set(counts) == set(range(5))
    assert sum((c - 200) ** 2 / 200 for c in counts.values()) < CHI2_4DOF_P001, counts


@pytest.mark.parametrize("name,lengths", [("symbol_copy", [2, 3, 4, 5]), ("bigram_flip", [2, 4, 6, 8])])
def test_one_length_per_batch_uniform_over_the_training_range(name, lengths):
    task = CLASSES[name](TransductionConfig(vocabulary=2, min_length=2, max_length=lengths[-1], curriculum_step=2))
    rng = np.random.default_rng(0)
    counts = Counter(_length(task.sample(rng, 2)) for _ in range(400))
    assert sorted(counts) == lengths
    assert sum((c - 100) ** 2 / 100 for c in counts.values()) < CHI2_3DOF_P001, counts


@pytest.mark.parametrize("name,long", [("reversal", {5, 6, 7, 8}), ("bigram_flip", {6, 8})])
def test_the_long_split_draws_lengths_past_the_training_range(name, long):
    task = CLASSES[name](TINY)
    assert task.splits == ("train", "long")
    rng = np.random.default_rng(0)
    assert {_length(task.sample_split(rng, 1, "long")) for _ in range(100)} == long
    train_lengths = {_length(task.sample_split(rng, 1, "train")) for _ in range(100)}
    assert train_lengths == ({2, 3, 4} if name == "reversal" else {2, 4})


def test_the_default_long_split_is_the_papers_65_to_128():
    rng = np.random.default_rng(0)
    lengths = [_length(SymbolCopy(TransductionConfig(vocabulary=2)).sample_split(rng, 1, "long")) for _ in range(200)]
    assert 65 <= min(lengths) < 70 and 123 < max(lengths) <= 128
    assert all(n % 2 == 0 for n in (_length(BigramFlip(TransductionConfig(vocabulary=2)).sample_split(rng, 1, "long"))
                                    for _ in range(20)))


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("min_length,max_length,step", [(2, 20, 4), (4, 10, 4), (6, 6, 2), (2, 10, 6)])
def test_curriculum_grows_the_longest_length_up_to_the_full_range(name, min_length, max_length, step):
    task = CLASSES[name](TransductionConfig(vocabulary=2, min_length=min_length, max_length=max_length,
                                            curriculum_step=step))
    ranges = [task.knob_range(k) for k in range(task.levels)]
    assert ranges == [(min_length, min(min_length + k * step, max_length)) for k in range(task.levels)]
    assert ranges[-1] == (min_length, max_length) == task.knob_range(None)
    assert all(a[1] < b[1] for a, b in zip(ranges, ranges[1:]))  # strictly: no level repeats another
    rng = np.random.default_rng(0)
    every = 2 if name == "bigram_flip" else 1
    for k, (lo, hi) in enumerate(ranges):
        lengths = {_length(task.sample(rng, 1, level=k)) for _ in range(100)}
        assert lengths == set(range(lo, hi + 1, every)), k


def test_default_curriculum_has_eight_levels_up_to_64():
    task = Reversal()
    assert [task.knob_range(k)[1] for k in range(task.levels)] == [8, 16, 24, 32, 40, 48, 56, 64]


# --- protocol ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSES)
def test_the_same_seed_gives_the_same_batch(name):
    check_same_seed_same_batch(CLASSES[name](TINY))


@pytest.mark.parametrize("name", CLASSES)
def test_no_global_random_state_is_read(name, monkeypatch):
    check_no_global_random_state(CLASSES[name](TINY), monkeypatch)


@pytest.mark.parametrize("name", CLASSES)
def test_bad_batch_size_split_or_level_is_refused(name):
    check_bad_requests_refused(CLASSES[name](TINY), "long")


@pytest.mark.parametrize("name", CLASSES)
def test_get_task_finds_the_class(name):
    assert get_task(name) is CLASSES[name]
    assert issubclass(CLASSES[name], Transduction) and issubclass(CLASSES[name], SequenceTask)
    assert CLASSES[name].output_kind == "classes"


def test_the_shared_base_is_not_a_task():
    with pytest.raises(TypeError, match="abstract"):
        Transduction(TINY)


@pytest.mark.parametrize("name", CLASSES)
def test_perfect_logits_score_perfectly_and_one_wrong_symbol_counts_once(name):
    task = CLASSES[name](TINY)
    b = task.sample_split(np.random.default_rng(0), 4, "long")
    logits = PERFECT_LOGIT * b.targets  # (B, T, O)
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0}
    wrong = logits.clone()
    t = int(b.mask[2].nonzero()[-1])  # a scored step of sequence 2
    wrong[2, t] = PERFECT_LOGIT * (1 - b.targets[2, t])  # every class but the target
    assert task.loss(wrong, b)[2].item() > PERFECT_LOGIT - 1
    metrics = task.metrics(wrong, b)
    assert metrics["exact"] == 0.75  # coarse: one sequence of four is wrong
    assert math.isclose(metrics["accuracy"], 1 - 1 / b.mask.sum().item(), rel_tol=1e-6)  # fine: one symbol


@pytest.mark.parametrize("name", CLASSES)
def test_outputs_before_the_answer_are_not_scored_and_extreme_logits_stay_finite(name):
    task = CLASSES[name](TINY)
    b = task.sample_split(np.random.default_rng(0), 4, "long")
    length = _length(b)
    logits = PERFECT_LOGIT * b.targets
    logits[:, :length + 1] = PERFECT_LOGIT * (1 - b.targets[:, :length + 1])  # wrong where nothing is scored
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0}
    extreme = -1e30 * b.targets  # the target class infinitely unlikely, in float32
    assert torch.isfinite(task.loss(extreme, b)).all()


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("task,field,changes", [
    (SymbolCopy, "vocabulary", {"vocabulary": 0}),
    (SymbolCopy, "min_length", {"min_length": 0}),
    (SymbolCopy, "max_length", {"min_length": 9, "max_length": 8}),
    (SymbolCopy, "eval_max_length", {"eval_max_length": 64}),
    (SymbolCopy, "curriculum_step", {"curriculum_step": 0}),
    (BigramFlip, "min_length", {"min_length": 7}),
    (BigramFlip, "max_length", {"max_length": 63}),
    (BigramFlip, "curriculum_step", {"curriculum_step": 3}),
    (BigramFlip, "eval_max_length", {"eval_max_length": 65}),
], ids=lambda x: x.__name__ if isinstance(x, type) else x if isinstance(x, str) else repr(x))
def test_config_errors_name_the_field(task, field, changes):
    bad = TransductionConfig(**changes)
    message = re.escape(f"TransductionConfig.{field} = {getattr(bad, field)!r}: ")
    with pytest.raises(ValueError, match=message):
        task(bad)
    if task is SymbolCopy:  # a field out of range for every task; the others are odd lengths for bigram_flip
        with pytest.raises(ValueError, match=message):
            bad.validate()
    else:
        bad.validate()
        Reversal(bad)


def test_default_config_is_valid_for_every_task_and_another_tasks_config_is_refused():
    for cls in CLASSES.values():
        assert cls().config == TransductionConfig()
    with pytest.raises(TypeError, match="needs a TransductionConfig, got ModelConfig"):
        Reversal(ModelConfig())


def test_the_command_line_is_generated_from_the_config_comments():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TransductionConfig)
    names = {f.name for f in dataclasses.fields(TransductionConfig)}
    helps = {a.dest: a.help for a in parser._actions if a.dest in names}
    assert set(helps) == names
    assert all(not h.startswith("(default") for h in helps.values()), helps  # every field has a comment
    args = parser.parse_args(["--vocabulary", "5", "--eval-max-length", "80"])
    assert config_from_args(TransductionConfig, args) == TransductionConfig(vocabulary=5, eval_max_length=80)


# --- smoke ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,memory", [("symbol_copy", "queue"), ("reversal", "stack"), ("bigram_flip", "stack")])
def test_a_tiny_model_trains_for_twenty_updates(name, memory, tmp_path):
    config = run_config(name, TINY, ModelConfig(hidden=8, memory=memory, memory_slots=40, memory_width=4),
                        TrainConfig(updates=20, batch=4, eval_batch=4, log_every=5, eval_every=20,
                                    checkpoint_every=20, device="cpu"))
    train(config, tmp_path / name, quiet=True)
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]
    assert sorted(r["split"] for r in records if r["kind"] == "eval") == ["long", "train"]
    assert all(math.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 1 for r in records if r["kind"] == "train")
    assert all(0 <= r[mode]["accuracy"] <= 1 for r in records if r["kind"] == "eval" for mode in ("soft", "hard"))
