import json

import numpy as np
import pytest
import torch

from diffvm.controllers import InductionConfig, ProgramController, arithmetic_machine, evaluate_program, induce
from diffvm.controllers.cli import main
from diffvm.interp import Instruction
from diffvm.tasks import ArithmeticTask


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
                                          ("baseline_decay", 1.0), ("cell", "rnn")])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"InductionConfig.{field}"):
        InductionConfig(**{field: value}).validate()


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
