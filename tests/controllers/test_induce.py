import json

import numpy as np
import pytest
import torch

from diffvm.controllers import (
    InductionConfig,
    ProgramController,
    arithmetic_machine,
    evaluate_program,
    greedy_program,
    induce,
)
from diffvm.controllers.cli import main
from diffvm.controllers.induce import SOLVED_CHECK_INPUTS, sample_programs
from diffvm.interp import Instruction
from diffvm.tasks import ArithmeticTask
from diffvm.tasks.nram import Access, resize_program


def test_reinforce_induces_a_two_step_program_that_generalises():
    task = ArithmeticTask("(a+b)*c")
    result = induce(task, InductionConfig(seed=0, restarts=2, updates=600))
    assert result.solved
    reads_first = any(a.kind == "step" and a.key == 1 for a in result.program.steps[1].args)
    assert reads_first, result.program.listing()
    x, y = task.sample(np.random.default_rng(1), 200, heldout=True)
    assert evaluate_program(result.program, task, x, y) == 1.0


def test_the_same_seed_gives_the_same_run():
    logs = []
    for _ in range(2):
        records = []
        induce(ArithmeticTask("a-b+c"), InductionConfig(seed=3, updates=50, restarts=1, check_every=10),
               log=records.append)
        logs.append(records)
    assert logs[0] == logs[1] and len(logs[0]) == 5


def test_soft_strategy_trains_through_the_soft_machine():
    cfg = InductionConfig(strategy="soft", updates=30, restarts=1, check_every=30, gumbel=True,
                          gradient_noise=0.01, temperature_end=0.1, depth_curriculum=True)
    records = []
    induce(ArithmeticTask("a*b-c"), cfg, log=records.append)
    assert records[-1]["update"] == 30 and np.isfinite(records[-1]["fit"])


def test_controller_feeds_each_step_the_previous_choice_and_masks_future_sources():
    m = arithmetic_machine()
    c = ProgramController(m, 3, hidden=8)
    seen = []

    def decide(t, lg):
        seen.append([x.shape[-1] for x in lg.operands])
        hot = torch.nn.functional.one_hot(torch.full((2,), t - 1), 3).float()
        return Instruction(hot, tuple(torch.softmax(x, -1) for x in lg.operands))

    c(decide, batch=2)
    assert seen == [[4, 4], [5, 5], [6, 6]]  # a, b, c, s0 then one more result per step


@pytest.mark.parametrize("field, value", [("strategy", "greedy"), ("updates", 0), ("lr", -1.0),
                                          ("baseline_decay", 1.0), ("cell", "rnn"), ("reward", "cells"),
                                          ("samples", -1)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"InductionConfig.{field}"):
        InductionConfig(**{field: value}).validate()


def test_graded_reward_is_for_reinforce_only():
    with pytest.raises(ValueError, match="InductionConfig.reward applies to strategy='reinforce' only"):
        InductionConfig(strategy="soft", reward="graded").validate()


def test_sample_programs_draws_distinct_programs_and_the_same_seed_draws_the_same():
    torch.manual_seed(0)
    controller = ProgramController(Access(6, ("inc",)).machine(), 3, hidden=8)
    a = sample_programs(controller, 40, 1.0, torch.Generator().manual_seed(1))
    b = sample_programs(controller, 40, 1.0, torch.Generator().manual_seed(1))
    assert [p.steps for p in a] == [p.steps for p in b]
    assert 1 < len(a) == len({p.steps for p in a}) and all(len(p.steps) == 3 for p in a)
    assert [p.steps for p in sample_programs(controller, 40, 1.0, torch.Generator().manual_seed(2))] != \
        [p.steps for p in a]
    cold = sample_programs(controller, 20, 1e-4, torch.Generator().manual_seed(1))  # all mass on the argmax
    assert [p.steps for p in cold] == [greedy_program(controller).steps]


class _ScoringLog(Access):
    """Access that records every program the hard interpreter scores, with its accuracy, by batch size."""

    def __init__(self, *args):
        super().__init__(*args)
        self.scored: dict[int, dict] = {}

    def exact(self, program, examples):
        accuracy = super().exact(program, examples)
        self.scored.setdefault(len(examples.memory), {})[program.steps] = accuracy
        return accuracy


def test_sampled_discretisation_solves_access_with_a_program_the_hard_interpreter_checked():
    task = _ScoringLog(6, ("inc",))
    cfg = InductionConfig(strategy="soft", program_steps=4, updates=200, batch=16, lr=0.01, restarts=2,
                          samples=64, seed=0)
    records = []
    result = induce(task, cfg, log=records.append)
    assert result.solved, result.program.listing()
    # the program returned is one the hard interpreter scored on the training check inputs, and exact there
    assert task.scored[SOLVED_CHECK_INPUTS][result.program.steps] == 1.0
    # here a sample is exact before the argmax is: the run stops at that check with the sampled program
    assert result.sampled and records[-1]["train_accuracy"] < 1.0 == records[-1]["sampled_accuracy"]
    big = resize_program(result.program, 24)  # held out: 4× the cells
    assert Access(24, ("inc",)).exact(big, Access(24).examples(np.random.default_rng(9), 100)) == 1.0
    again = induce(_ScoringLog(6, ("inc",)), cfg)
    assert again.program.steps == result.program.steps and again.total_updates == result.total_updates


def test_sampled_discretisation_off_returns_the_greedy_program():
    task = _ScoringLog(6, ("inc",))
    records = []
    result = induce(task, InductionConfig(strategy="soft", program_steps=4, updates=20, batch=8, restarts=1,
                                          check_every=10), log=records.append)
    assert not result.sampled and "sampled_accuracy" not in records[-1]
    assert set(task.scored) == {SOLVED_CHECK_INPUTS}  # only the greedy programs at the checks were scored
    assert "; ".join(map(str, result.program.steps)) == records[-1]["program"]


def test_reinforce_with_graded_reward_and_sampled_discretisation_solves_arithmetic():
    task = ArithmeticTask("(a+b)*c")
    records = []
    result = induce(task, InductionConfig(seed=0, restarts=1, updates=400, reward="graded", samples=16),
                    log=records.append)
    assert result.solved and records[-1]["sampled_accuracy"] <= 1.0
    x, y = task.sample(np.random.default_rng(1), 200, heldout=True)
    assert evaluate_program(result.program, task, x, y) == 1.0


def test_demo_json_summary(tmp_path, capsys):
    main(["demo", "--json", "--quiet", "--functions", "a-b+c", "--out", str(tmp_path), "--restarts", "2"])
    summary = json.loads(capsys.readouterr().out)
    row = summary["functions"][0]
    assert summary["task"] == "arithmetic" and row["function"] == "a-b+c"
    assert row["discretised_accuracy"] == 1.0 and row["program"].startswith("program(")
    assert 0.0 <= row["soft_accuracy"] <= 1.0 and summary["steps"] > 0
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "metrics.jsonl", "summary.json"}
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["final"] is True


@pytest.mark.parametrize("argv, message", [
    (["demo", "--updates", "0"], "InductionConfig.updates = 0 is out of range"),
    (["demo", "--functions", "a/b"], "unknown function"),
    (["demo", "--no-such-flag"], "unrecognized arguments"),
    (["demo", "--lr", "fast"], "invalid float value"),
])
def test_demo_errors_are_clear_and_write_nothing(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
