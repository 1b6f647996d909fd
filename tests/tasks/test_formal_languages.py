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
from diffvm.tasks.formal_languages import AnB2n, AnBmCnm, AnBn, AnBnCn, AnBnCnDn, CountingLanguage, LanguageConfig

# Chi-square critical value for 3 degrees of freedom at p = 0.001 (fixed seeds: no flakes).
CHI2_3DOF_P001 = 16.27
PERFECT_LOGIT = 20.0  # the target class 20 above the others: softmax within 1e-8 of one-hot

# The languages as the paper writes them, a string for each (n, m); m is unused where absent.
LANGUAGES = {
    "anbn": (AnBn, lambda n, m: "a" * n + "b" * n),
    "anbncn": (AnBnCn, lambda n, m: "a" * n + "b" * n + "c" * n),
    "anbncndn": (AnBnCnDn, lambda n, m: "a" * n + "b" * n + "c" * n + "d" * n),
    "anb2n": (AnB2n, lambda n, m: "a" * n + "b" * (2 * n)),
    "anbmcnm": (AnBmCnm, lambda n, m: "a" * n + "b" * m + "c" * (n + m)),
}


def _text(task, onehot: torch.Tensor) -> str:
    """The characters of a (T, V) one-hot sequence."""
    return "".join(task.vocabulary[i] for i in onehot.argmax(-1).tolist())


def _strings(task, batch, i: int) -> list[str]:
    """The strings of sequence i (its stream split at the "."s, padding dropped)."""
    stream = _text(task, batch.inputs[i]) + _text(task, batch.targets[i])[-1]
    return [s for s in stream.split(".") if s]


def _ns(task, batch) -> list[int]:
    """n of every string of a batch: its number of a's."""
    return [s.count("a") for i in range(batch.inputs.shape[0]) for s in _strings(task, batch, i)]


def _next_if_determined(language, prefix: str, bound: int) -> str | None:
    """The character after `prefix` (the current string read so far) when every string of the
    language with n, m ≤ `bound`, followed by its ".", that goes on from `prefix` agrees on it."""
    options = {w[len(prefix)] for w in (language(n, m) + "." for n in range(1, bound + 1) for m in range(1, bound + 1))
               if len(w) > len(prefix) and w.startswith(prefix)}
    return options.pop() if len(options) == 1 else None


# --- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LANGUAGES)
@pytest.mark.parametrize("strings,batch", [(1, 4), (3, 1), (2, 5)])
def test_batch_shapes_dtypes_and_one_hot_steps(name, strings, batch):
    task = LANGUAGES[name][0](LanguageConfig(max_n=5, strings_per_sequence=strings))
    b = task.sample(np.random.default_rng(0), batch)
    vocabulary = len(set(name) - set("nm2")) + 1  # the letters of its name, and "."
    assert task.input_size == task.output_size == len(task.vocabulary) == vocabulary
    assert task.vocabulary.endswith(".")
    steps = b.inputs.shape[1]
    assert b.inputs.shape == b.targets.shape == (batch, steps, vocabulary)
    assert b.mask.shape == (batch, steps)
    assert {b.inputs.dtype, b.targets.dtype, b.mask.dtype} == {torch.float32}
    for x in (b.inputs, b.targets):
        assert set(x.flatten().tolist()) <= {0.0, 1.0} and (x.sum(-1) == 1).all()  # one character a step
    assert set(b.mask.flatten().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name,n,strings,inputs,targets,mask", [
    ("anbn", 2, 2, ".aabb.aabb", "aabb.aabb.", "1001110011"),
    ("anbncn", 1, 1, ".abc", "abc.", "1011"),
    ("anbncndn", 1, 1, ".abcd", "abcd.", "10111"),
    ("anb2n", 2, 1, ".aabbbb", "aabbbb.", "1001111"),
    ("anbmcnm", 1, 2, ".abcc.abcc", "abcc.abcc.", "1001110011"),
    ("anbmcnm", 2, 1, ".aabbcccc", "aabbcccc.", "100001111"),
])
def test_layout_of_tiny_streams_by_hand(name, n, strings, inputs, targets, mask):
    task = LANGUAGES[name][0](LanguageConfig(min_n=n, max_n=n, strings_per_sequence=strings))
    b = task.sample(np.random.default_rng(0), 3)
    for i in range(3):
        assert _text(task, b.inputs[i]) == inputs
        assert _text(task, b.targets[i]) == targets
        assert "".join(str(int(x)) for x in b.mask[i].tolist()) == mask


@pytest.mark.parametrize("name", LANGUAGES)
def test_targets_and_mask_match_a_plain_loop_over_the_language(name):
    """Each sequence is K strings of the language, each after a "."; the target is the next
    character; exactly the steps whose next character the string read so far determines are
    scored; the padding after the last "." is "." and unscored."""
    cls, language = LANGUAGES[name]
    strings, lo, hi = 3, 1, 5
    task = cls(LanguageConfig(min_n=lo, max_n=hi, strings_per_sequence=strings))
    bound = 2 * hi + 2  # a count past the largest drawn, so that the bound itself tells nothing
    for seed in range(3):
        b = task.sample(np.random.default_rng(seed), 4)
        lengths = []
        for i in range(4):
            words = _strings(task, b, i)
            assert len(words) == strings
            for w in words:
                assert any(w == language(n, m) for n in range(lo, hi + 1) for m in range(lo, hi + 1)), w
            stream = "".join("." + w for w in words) + "."
            length = len(stream) - 1
            lengths.append(length)
            inputs, targets = _text(task, b.inputs[i]), _text(task, b.targets[i])
            prefix = ""
            for t in range(b.inputs.shape[1]):
                if t >= length:  # padding
                    assert (inputs[t], targets[t], b.mask[i, t].item()) == (".", ".", 0.0), (seed, i, t)
                    continue
                prefix = "" if stream[t] == "." else prefix + stream[t]
                assert (inputs[t], targets[t]) == (stream[t], stream[t + 1]), (seed, i, t)
                determined = _next_if_determined(language, prefix, bound)
                assert b.mask[i, t].item() == float(determined is not None), (seed, i, t, prefix)
                assert determined in (None, targets[t])
        assert b.inputs.shape[1] == max(lengths)  # padded to the longest, no further


def test_sequences_of_a_batch_differ_and_the_shorter_are_padded():
    task = AnBn(LanguageConfig(min_n=1, max_n=9))
    b = task.sample(np.random.default_rng(0), 16)
    lengths = [2 * n + 1 for n in _ns(task, b)]
    assert len(set(lengths)) > 3
    assert b.inputs.shape[1] == max(lengths)
    assert b.mask.sum(1).tolist() == [n + 1 for n in _ns(task, b)]  # the "." and the b's


# --- distributions, splits, levels -------------------------------------------------------------


def test_n_is_uniform_over_the_training_range_one_draw_per_string():
    task = AnBn(LanguageConfig(min_n=2, max_n=5, strings_per_sequence=4))
    counts = Counter(_ns(task, task.sample(np.random.default_rng(0), 100)))
    assert set(counts) == {2, 3, 4, 5}
    assert sum((c - 100) ** 2 / 100 for c in counts.values()) < CHI2_3DOF_P001, counts


def test_m_is_drawn_independently_of_n():
    task = AnBmCnm(LanguageConfig(min_n=1, max_n=2))
    b = task.sample(np.random.default_rng(0), 400)
    pairs = Counter((s.count("a"), s.count("b")) for i in range(400) for s in _strings(task, b, i))
    assert set(pairs) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert sum((c - 100) ** 2 / 100 for c in pairs.values()) < CHI2_3DOF_P001, pairs


@pytest.mark.parametrize("name", LANGUAGES)
def test_splits_draw_long_and_exact_counts(name):
    task = LANGUAGES[name][0](LanguageConfig(max_n=4, eval_max_n=9, eval_n="12, 6", strings_per_sequence=2))
    assert task.splits == ("train", "long", "n12", "n6")
    rng = np.random.default_rng(0)
    train_ns, long_ns = (set(_ns(task, task.sample_split(rng, 50, s))) for s in ("train", "long"))
    assert train_ns == set(range(1, 5)) and long_ns == set(range(5, 10))
    for split, n in [("n12", 12), ("n6", 6)]:
        b = task.sample_split(rng, 3, split)
        assert set(_ns(task, b)) == {n}
        if name == "anbmcnm":
            assert {s.count("b") for i in range(3) for s in _strings(task, b, i)} == {n}  # m = N as well
    assert AnBn().splits == ("train", "long")


def test_default_long_split_is_the_papers_test_range():
    task = AnBn()
    assert task.n_range() == (1, 19)
    assert set(_ns(task, task.sample_split(np.random.default_rng(0), 300, "long"))) == set(range(20, 61))


@pytest.mark.parametrize("min_n,max_n,step", [(1, 19, 4), (3, 10, 4), (5, 5, 2), (2, 9, 7)])
def test_curriculum_grows_the_largest_n_up_to_the_full_range(min_n, max_n, step):
    task = AnBmCnm(LanguageConfig(min_n=min_n, max_n=max_n, eval_max_n=max_n + 1, curriculum_step=step))
    ranges = [task.n_range(k) for k in range(task.levels)]
    assert ranges == [(min_n, min(min_n + k * step, max_n)) for k in range(task.levels)]
    assert ranges[-1] == (min_n, max_n) == task.n_range(None)
    assert all(a[1] < b[1] for a, b in zip(ranges, ranges[1:]))  # strictly: no level repeats another
    rng = np.random.default_rng(0)
    for k, (lo, hi) in enumerate(ranges):
        b = task.sample(rng, 100, level=k)
        assert set(_ns(task, b)) == set(range(lo, hi + 1)), k
        assert {s.count("b") for i in range(100) for s in _strings(task, b, i)} == set(range(lo, hi + 1)), k


def test_default_curriculum_has_six_levels():
    assert [AnBn().n_range(k)[1] for k in range(AnBn().levels)] == [1, 5, 9, 13, 17, 19]


# --- every language -----------------------------------------------------------------------------

TASKS = {name: cls(LanguageConfig(max_n=6, eval_max_n=9, eval_n="11", strings_per_sequence=2))
         for name, (cls, _) in LANGUAGES.items()}


@pytest.mark.parametrize("name", TASKS)
def test_the_same_seed_gives_the_same_batch(name):
    check_same_seed_same_batch(TASKS[name])


@pytest.mark.parametrize("name", TASKS)
def test_no_global_random_state_is_read(name, monkeypatch):
    check_no_global_random_state(TASKS[name], monkeypatch)


@pytest.mark.parametrize("name", TASKS)
def test_bad_batch_size_split_or_level_is_refused(name):
    check_bad_requests_refused(TASKS[name], "long")


@pytest.mark.parametrize("name", TASKS)
def test_get_task_finds_the_class(name):
    cls = get_task(name)
    assert cls is LANGUAGES[name][0] and issubclass(cls, CountingLanguage) and issubclass(cls, SequenceTask)
    assert cls.output_kind == "classes" and cls.Config is LanguageConfig


@pytest.mark.parametrize("name", TASKS)
def test_perfect_logits_score_perfectly_and_one_wrong_scored_step_is_one_error(name):
    task = TASKS[name]
    b = task.sample_split(np.random.default_rng(0), 4, "long")
    logits = PERFECT_LOGIT * b.targets  # (B, T, V)
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0}
    wrong = logits.clone()
    t = int(b.mask[2].nonzero()[-1])  # the last scored step of sequence 2: its final "."
    wrong[2, t] = PERFECT_LOGIT * b.targets[2, t].roll(1)  # another class
    assert task.loss(wrong, b)[2].item() > PERFECT_LOGIT - 1e-3
    metrics = task.metrics(wrong, b)
    assert metrics["exact"] == 0.75
    assert metrics["accuracy"] == pytest.approx(1 - 1 / b.mask.sum().item())


@pytest.mark.parametrize("name", TASKS)
def test_unscored_steps_and_padding_do_not_count(name):
    task = TASKS[name]
    b = task.sample_split(np.random.default_rng(0), 4, "long")
    logits = PERFECT_LOGIT * b.targets
    logits[b.mask == 0] = PERFECT_LOGIT * b.targets[b.mask == 0].roll(1, dims=-1)  # wrong wherever unscored
    assert (b.mask == 0).any()
    assert task.loss(logits, b).max().item() < 1e-6
    assert task.metrics(logits, b) == {"accuracy": 1.0, "exact": 1.0}


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,changes", [
    ("min_n", {"min_n": 0}),
    ("max_n", {"min_n": 5, "max_n": 4}),
    ("eval_max_n", {"eval_max_n": 19}),
    ("eval_n", {"eval_n": "60,x"}),
    ("eval_n", {"eval_n": "0"}),
    ("eval_n", {"eval_n": "60,60"}),
    ("strings_per_sequence", {"strings_per_sequence": 0}),
    ("curriculum_step", {"curriculum_step": 0}),
], ids=lambda x: x if isinstance(x, str) else repr(x))
def test_config_errors_name_the_field(field, changes):
    bad = LanguageConfig(**changes)
    message = re.escape(f"LanguageConfig.{field} = {getattr(bad, field)!r}: ")
    with pytest.raises(ValueError, match=message):
        bad.validate()
    for cls, _ in LANGUAGES.values():
        with pytest.raises(ValueError, match=message):
            cls(bad)


def test_default_config_is_valid_and_a_language_refuses_another_tasks_config():
    LanguageConfig().validate()
    with pytest.raises(TypeError, match="needs a LanguageConfig, got TrainConfig"):
        AnBn(TrainConfig())


def test_the_command_line_is_generated_from_the_config_comments():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, LanguageConfig)
    names = {f.name for f in dataclasses.fields(LanguageConfig)}
    helps = {a.dest: a.help for a in parser._actions if a.dest in names}
    assert set(helps) == names
    assert all(not h.startswith("(default") for h in helps.values()), helps  # every field has a comment
    argv = ["--max-n", "9", "--eval-n", "40,60", "--strings-per-sequence", "3"]
    assert config_from_args(LanguageConfig, parser.parse_args(argv)) == LanguageConfig(
        max_n=9, eval_n="40,60", strings_per_sequence=3)


# --- training -----------------------------------------------------------------------------------


def test_every_language_trains_a_few_updates_with_a_stack_rnn(tmp_path):
    model = ModelConfig(hidden=8, memory="stackrnn", heads=2, memory_slots=4, memory_width=1)
    steps = TrainConfig(updates=20, batch=4, eval_batch=4, log_every=5, eval_every=20, checkpoint_every=20)
    for name in LANGUAGES:
        config = LanguageConfig(max_n=3, eval_max_n=5, curriculum_step=1)
        train(run_config(name, config, model, steps), tmp_path / name, quiet=True)
        records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        train_records = [r for r in records if r["kind"] == "train"]
        assert [r["update"] for r in train_records] == [5, 10, 15, 20], name
        assert all(math.isfinite(r["loss"]) for r in train_records), name
        evals = {r["split"]: r for r in records if r["kind"] == "eval"}
        assert set(evals) == {"train", "long"}, name
        assert all(0 <= r["soft"]["accuracy"] <= 1 for r in evals.values()), name
