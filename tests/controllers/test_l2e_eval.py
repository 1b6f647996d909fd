"""Tests of `diffvm.controllers.l2e_eval` and `diffvm eval l2e`.

The command on a run trained for a few updates; teacher-forced accuracy against a plain loop over
the model's logits, one snippet at a time; batched step-by-step greedy decoding against re-running
the whole prefix at every step; and fake models that are right, wrong, or right only when fed the
correct previous character, which teacher forcing and greedy decoding must tell apart.
"""

import json

import numpy as np
import pytest
import torch

from diffvm.controllers.cli import main
from diffvm.controllers.l2e_eval import evaluate_l2e, greedy_decode, teacher_forced_counts
from diffvm.controllers.model import MemoryModel, ModelConfig, ModelOutput
from diffvm.controllers.trainer import TrainConfig, load_run, run_config, train
from diffvm.programs.snippets import evaluate, parse_snippet
from diffvm.tasks import L2EConfig, L2ETask
from diffvm.tasks.l2e import VOCABULARY, Curriculum, sample_examples
from diffvm.tasks.l2e_task import PHASE, encode_examples

V = len(VOCABULARY)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-layer LSTM trained for a few updates on l2e at (2, 1)."""
    run_dir = tmp_path_factory.mktemp("l2e") / "run"
    config = run_config("l2e", L2EConfig(length=2, nesting=1), ModelConfig(hidden=16, layers=2),
                        TrainConfig(updates=6, batch=4, eval_batch=4, eval_every=6, checkpoint_every=6, device="cpu"))
    train(config, run_dir, quiet=True)
    return run_dir


def _examples(seed: int, count: int, length: int = 2, nesting: int = 2):
    return sample_examples(np.random.default_rng(seed), count, Curriculum("baseline", length, nesting))


def _random_model(seed: int = 0, **fields) -> MemoryModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MemoryModel(ModelConfig(**{"hidden": 12, **fields}), V + 1, V)
    with torch.no_grad():  # larger output weights: argmaxes that differ from step to step
        model.output_head.weight.mul_(8)
    return model.eval()


# --- the command ---------------------------------------------------------------------------------

def test_the_command_prints_both_metrics_side_by_side_per_point(tiny_run, capsys):
    assert main(["eval", "l2e", str(tiny_run), "--points", "2x1", "1x2", "--snippets", "12", "--batch", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# l2e programs (combined curriculum to 2x1)") and "update 6" in out[0]
    assert out[1].split() == ["point", "snippets", "teacher-forced", "char", "accuracy", "greedy", "exact", "match"]
    assert [row.split()[:2] for row in out[2:]] == [["2x1", "12"], ["1x2", "12"]]
    assert all(0 <= float(x) <= 1 for row in out[2:] for x in row.split()[2:])
    assert json.loads((tiny_run / "eval_l2e.json").read_text())["points"][1]["point"] == "1x2"


def test_the_json_report_is_the_same_for_the_same_seed(tiny_run, capsys):
    argv = ["eval", "l2e", str(tiny_run), "--points", "2x1", "--snippets", "8", "--json", "--seed", "3"]
    main(argv)
    first = json.loads(capsys.readouterr().out)
    main(argv)
    assert json.loads(capsys.readouterr().out) == first
    (point,) = first["points"]
    assert set(point) == {"point", "length", "nesting", "snippets", "teacher_forced_accuracy", "greedy_exact"}
    assert point["snippets"] == 8 and first["update"] == 6 and first["trained_on"] == "2x1"


@pytest.mark.parametrize("argv, message", [
    (["--points", "4-1"], "expected LENGTHxNESTING"),
    (["--snippets", "0"], "snippets and batch must be ≥ 1"),
])
def test_bad_options_are_named(tiny_run, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "l2e", str(tiny_run), *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_run_of_another_task_is_refused(tmp_path, capsys):
    from diffvm.tasks import CopyConfig

    config = run_config("copy", CopyConfig(width=2, min_length=1, max_length=1, eval_lengths=""), ModelConfig(hidden=4),
                        TrainConfig(updates=1, batch=2, eval_batch=2, device="cpu"))
    train(config, tmp_path / "copy", quiet=True)
    with pytest.raises(SystemExit):
        main(["eval", "l2e", str(tmp_path / "copy")])
    assert "needs an l2e run" in capsys.readouterr().err


def test_plain_eval_of_a_run_is_unchanged(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--batch", "4"]) == 0
    assert "2x1" in capsys.readouterr().out


# --- teacher forcing and greedy decoding against plain loops ---------------------------------------

def test_teacher_forced_accuracy_equals_a_plain_loop_over_each_snippets_logits(tiny_run):
    run = load_run(tiny_run)
    examples = _examples(1, 7)
    right, chars, whole = teacher_forced_counts(run.model, examples)
    loop_right = loop_chars = loop_whole = 0
    for e in examples:  # one snippet at a time, no padding
        batch = encode_examples([e])
        with torch.no_grad():
            logits = run.model(batch.inputs).logits[0]  # (T, O)
        p = len(e.text)
        got = [VOCABULARY[int(logits[p + j].argmax())] for j in range(len(e.target))]
        hits = sum(g == c for g, c in zip(got, e.target))
        loop_right, loop_chars, loop_whole = loop_right + hits, loop_chars + len(e.target), loop_whole + (
            hits == len(e.target))
    assert (right, chars, whole) == (loop_right, loop_chars, loop_whole)
    result = evaluate_l2e(run.model, run.task, [(2, 2)], snippets=7, batch=3, seed=0)[0]
    assert result["snippets"] == 7 and 0 <= result["teacher_forced_accuracy"] <= 1


@pytest.mark.parametrize("fields", [{"layers": 2}, {"controller": "gru", "memory": "ntm", "memory_slots": 6,
                                                    "memory_width": 3}])
def test_batched_greedy_decoding_equals_rerunning_the_whole_prefix_each_step(fields):
    model = _random_model(**fields)
    examples = _examples(2, 5, length=1, nesting=2)
    decoded = greedy_decode(model, examples)
    for e, answer in zip(examples, decoded):  # O(T²): the prefix from the start at every step
        prefix = [VOCABULARY.index(c) for c in e.text]
        inputs = torch.zeros(1, len(prefix), V + 1)
        inputs[0, torch.arange(len(prefix)), prefix] = 1
        go = torch.zeros(1, 1, V + 1)
        go[0, 0, PHASE] = 1
        inputs, expected = torch.cat([inputs, go], 1), ""
        while len(expected) < len(e.target) and not expected.endswith("."):
            with torch.no_grad():
                c = int(model(inputs).logits[0, -1].argmax())
            expected += VOCABULARY[c]
            step = torch.zeros(1, 1, V + 1)
            step[0, 0, [c, PHASE]] = 1
            inputs = torch.cat([inputs, step], 1)
        assert answer == expected
    assert len({len(a) for a in decoded}) > 1 or len(set(decoded)) > 1  # the answers are not all alike


def test_greedy_exact_match_is_the_fraction_answered_right_in_full_under_teacher_forcing(tiny_run):
    """A model answering right is fed exactly the teacher-forced inputs (module docstring)."""
    examples = _examples(9, 30)
    # right on the programs of even length, and then only when fed its own right answer so far
    model = FakeModel(first_wrong=lambda program: len(program) % 2 == 1, feedback=True)
    _, _, whole = teacher_forced_counts(model, examples)
    greedy = sum(a == e.target for a, e in zip(greedy_decode(model, examples), examples))
    assert 0 < whole < len(examples) and greedy == whole
    run = load_run(tiny_run)
    _, _, whole = teacher_forced_counts(run.model, examples)
    assert sum(a == e.target for a, e in zip(greedy_decode(run.model, examples), examples)) == whole


# --- fake models ---------------------------------------------------------------------------------

class FakeModel(torch.nn.Module):
    """Reads the program and the fed answer characters one step at a time; at answer step j writes
    character j of the program's output (the reference evaluator's), except: it writes a wrong first
    character for the programs `first_wrong(text)` is true of, and with `feedback` it writes the
    right one only when the characters fed so far are the output's."""

    def __init__(self, *, first_wrong=lambda program: False, feedback: bool = True):
        super().__init__()
        self.first_wrong, self.feedback = first_wrong, feedback
        self.cfg = ModelConfig()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def initial_carry(self, batch, *, device=None, dtype=torch.float32):
        return [("", "", False) for _ in range(batch)]  # (program read, answer fed, answering)

    def forward(self, inputs, *, mode="train", generator=None, carry=None):
        keep = carry is not None
        carry = list(carry) if keep else self.initial_carry(inputs.shape[0])
        logits = torch.zeros(inputs.shape[0], inputs.shape[1], V)
        for b in range(inputs.shape[0]):
            for t in range(inputs.shape[1]):
                program, fed, answering = carry[b]
                x = inputs[b, t]
                char = VOCABULARY[int(x[:V].argmax())] if x[:V].sum() > 0 else ""
                if x[PHASE] == 0:
                    program += char
                else:
                    fed += char if answering else ""
                    answering = True
                carry[b] = (program, fed, answering)
                if not answering:
                    continue
                target, j = f"{evaluate(parse_snippet(program))}.", len(fed)
                right = j < len(target) and (not self.feedback or fed == target[:j])
                right = right and not (self.first_wrong(program) and j == 0)
                c = target[j] if right else ("7" if target[min(j, len(target) - 1)] != "7" else "8")
                logits[b, t, VOCABULARY.index(c)] = 10.0
        return ModelOutput(logits, torch.ones(inputs.shape[:2]), torch.zeros(inputs.shape[0]),
                           carry=carry if keep else None)


def test_a_model_forced_to_be_right_gets_exact_match_one_both_ways():
    task = L2ETask(L2EConfig(length=2, nesting=3))
    examples = _examples(4, 9, length=2, nesting=3)
    model = FakeModel()
    assert greedy_decode(model, examples) == [e.target for e in examples]
    (result,) = evaluate_l2e(model, task, [(2, 3)], snippets=9, batch=4, seed=0)
    assert (result["teacher_forced_accuracy"], result["greedy_exact"]) == (1, 1)


def test_a_wrong_model_gets_exact_match_zero():
    examples = _examples(5, 6)
    model = FakeModel(first_wrong=lambda program: True, feedback=False)
    assert all(a != e.target for a, e in zip(greedy_decode(model, examples), examples))
    right, chars, whole = teacher_forced_counts(model, examples)
    assert whole == 0 and right == chars - len(examples)  # only the first characters are wrong


def test_greedy_decoding_feeds_back_the_models_own_outputs_teacher_forcing_the_targets():
    """Wrong first character, then right only when fed the right prefix: teacher forcing scores
    every later character, greedy decoding none."""
    examples = [e for e in _examples(6, 12) if len(e.target) >= 3]
    model = FakeModel(first_wrong=lambda program: True, feedback=True)
    right, chars, _ = teacher_forced_counts(model, examples)
    assert right == chars - len(examples)
    answers = greedy_decode(model, examples)
    assert all(a[0] != e.target[0] and a[1:] != e.target[1:len(a)] for a, e in zip(answers, examples))


def test_greedy_answers_stop_at_the_first_stop_or_at_the_targets_length():
    examples = _examples(7, 4)
    model = FakeModel(feedback=False)
    assert greedy_decode(model, examples) == [e.target for e in examples]

    class Stopper(FakeModel):  # writes "." at once
        def forward(self, inputs, **kw):
            out = super().forward(inputs, **kw)
            return out._replace(logits=torch.zeros_like(out.logits).index_fill_(-1, torch.tensor([V - 2]), 10.0))

    assert VOCABULARY[V - 2] == "."
    assert greedy_decode(Stopper(), examples) == ["."] * 4
