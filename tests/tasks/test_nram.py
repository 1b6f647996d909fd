import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.controllers import InductionConfig, induce
from diffvm.interp import Pointer
from diffvm.interp.device import DeviceOp
from diffvm.programs import Program, Step, one_hot_trace
from diffvm.programs.program import Source
from diffvm.tasks.nram import MEMORY_TASKS, Access, Increment, Swap, get_memory_task, resize_program

# The programs of the module docstring, op names without the nram{M}:: prefix.
SOLUTIONS = {
    "access": [("mem::read", "zero"), ("inc", "s1"), ("mem::read", "s2"), ("mem::write", "zero", "s3")],
    "swap": [("mem::read", "zero"), ("mem::read", "one"), ("mem::read", "s1"), ("mem::read", "s2"),
             ("mem::write", "s1", "s4"), ("mem::write", "s2", "s3")],
    "increment": [("mem::read", "i"), ("inc", "s1"), ("mem::write", "i", "s2")],
}


def _source(text: str) -> Source:
    if text.startswith("s") and text[1:].isdigit():
        return Source("step", int(text[1:]))
    return Source("input", text) if text == "i" else Source("const", text)


def _program(task, steps, cells: int | None = None) -> Program:
    """A program on `task`'s machine from (op, *args) rows; ops without '::' are NRAM modules."""
    machine = task.machine(cells)
    m = machine.output.size
    steps = tuple(Step(op if "::" in op else f"nram{m}::{op}", tuple(map(_source, args))) for op, *args in steps)
    device_ops = tuple(o for o in machine.opset if isinstance(o, DeviceOp))
    return Program(machine.inputs, machine.output, steps, machine.constants, device_ops)


@pytest.mark.parametrize("name", MEMORY_TASKS)
def test_the_documented_program_solves_the_task_and_a_memory_four_times_larger(name):
    task = get_memory_task(name)(8)
    program = _program(task, SOLUTIONS[name])
    assert task.exact(program, task.examples(np.random.default_rng(0), 50)) == 1.0
    big = resize_program(program, 32)
    assert big.output == Pointer[32] and all("nram8" not in s.op for s in big.steps)
    assert task.exact(big, task.examples(np.random.default_rng(1), 50, 32)) == 1.0
    with pytest.raises(ValueError, match=r"computes Pointer\[8\] but the memory has 32 cells: run resize_program"):
        task.exact(program, task.examples(np.random.default_rng(1), 5, 32))  # typed for 8 cells


@pytest.mark.parametrize("name", MEMORY_TASKS)
def test_a_wrong_program_is_scored_wrong(name):
    task = get_memory_task(name)(8)
    wrong = _program(task, [("mem::write", "zero", "one")])  # overwrites cell 0, touches nothing scored else
    assert task.exact(wrong, task.examples(np.random.default_rng(0), 50)) < 0.2


@pytest.mark.parametrize("name", MEMORY_TASKS)
def test_soft_fit_is_zero_for_the_one_hot_solution_and_positive_for_a_wrong_program(name):
    task = get_memory_task(name)(7)
    machine = task.machine()
    examples = task.examples(np.random.default_rng(2), 16)
    right = one_hot_trace(machine, _program(task, SOLUTIONS[name]), dtype=torch.float32)
    assert task.soft_fit(machine, [i.expand(16) for i in right], examples).item() < 1e-5
    wrong = one_hot_trace(machine, _program(task, [("mem::write", "zero", "one")]), dtype=torch.float32)
    assert task.soft_fit(machine, [i.expand(16) for i in wrong], examples).item() > 1.0


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(MEMORY_TASKS)), st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_one_hot_soft_machine_leaves_the_memory_the_hard_interpreter_leaves(name, seed, steps):
    task = get_memory_task(name)(6)
    machine = task.machine()
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(1, steps + 1):
        op = machine.opset.ops[int(rng.integers(len(machine.opset)))]
        sources = [str(s) for s in machine.sources(machine.output, t)]
        rows.append((op.name, *(sources[int(rng.integers(len(sources)))] for _ in op.inputs)))
    program = _program(task, rows)
    examples = task.examples(rng, 3)
    trace = one_hot_trace(machine, program, dtype=torch.float32)
    device = machine.devices["mem"]
    state = device.initial_state(3, memory=torch.as_tensor(examples.memory))
    eye = torch.eye(6)
    for i in range(task.iterations(6)):
        inputs = {"i": eye[i].expand(3, 6)} if task.looped else {}
        _, final = machine.run([x.expand(3) for x in trace], inputs, devices={"mem": state})
        state = final.devices["mem"]
    soft = state.memory.argmax(-1).tolist()  # (B, M)
    assert torch.allclose(state.memory.max(-1).values, torch.ones(3, 6))  # still one-hot
    assert soft == [task.final_memory(program, m) for m in examples.memory]


def test_access_layout():
    ex = Access(9).examples(np.random.default_rng(0), 40)
    k = ex.memory[:, 0]
    assert ((0 <= k) & (k < 7)).all() and (ex.memory[:, 8] == 0).all() and (ex.memory[:, 1:8] >= 1).all()
    assert (ex.target[:, 0] == ex.memory[np.arange(40), 1 + k]).all()
    assert (ex.target[:, 1:] == ex.memory[:, 1:]).all() and ex.scored.sum(1).tolist() == [1] * 40


def test_swap_layout():
    ex = Swap(9).examples(np.random.default_rng(0), 40)
    p, q = ex.memory[:, 0], ex.memory[:, 1]
    assert (p != q).all() and ((2 <= p) & (p <= 7)).all() and ((2 <= q) & (q <= 7)).all()
    rows = np.arange(40)
    assert (ex.target[rows, p] == ex.memory[rows, q]).all() and (ex.target[rows, q] == ex.memory[rows, p]).all()
    assert ((ex.target != ex.memory).sum(1) <= 2).all()
    assert ex.scored[:, 2:8].all() and not ex.scored[:, [0, 1, 8]].any()


def test_increment_layout():
    task = Increment(7)
    ex = task.examples(np.random.default_rng(0), 40)
    assert (ex.target[:, :6] == (ex.memory[:, :6] + 1) % 7).all() and (ex.memory[:, 6] == 0).all()
    assert task.iterations(7) == 6 and task.machine().inputs == {"i": Pointer[7]}


@pytest.mark.parametrize("name", MEMORY_TASKS)
def test_the_same_seed_gives_the_same_problems_and_no_global_state_is_read(name, monkeypatch):
    task = get_memory_task(name)(8)
    a = task.examples(np.random.default_rng(4), 6)
    monkeypatch.setattr(np.random, "integers", None, raising=False)
    monkeypatch.setattr(np.random, "randint", lambda *a, **k: pytest.fail("global RNG"))
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: pytest.fail("global RNG"))
    np.random.seed(99)
    b = task.examples(np.random.default_rng(4), 6)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (task.examples(np.random.default_rng(5), 6).memory == a.memory).all()


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="'access': cells = 4: must be an int ≥ 5"):
        Access(4)
    with pytest.raises(ValueError, match=r"unknown NRAM ops \['mul'\]"):
        Swap(8, ("inc", "mul"))
    with pytest.raises(ValueError, match="batch = 0"):
        Access(8).examples(np.random.default_rng(0), 0)
    with pytest.raises(ValueError, match="unknown memory task 'sort'; known: access, swap, increment"):
        get_memory_task("sort")


def test_soft_induction_lowers_the_loss_on_increment():
    task = Increment(6, ("inc", "dec"))
    records = []
    induce(task, InductionConfig(strategy="soft", program_steps=3, updates=40, batch=8, lr=1e-2, restarts=1,
                                 check_every=10), log=records.append)
    assert records[-1]["fit"] < records[0]["fit"]


def test_diffvm_train_runs_a_memory_task_and_writes_its_run(tmp_path, capsys):
    from diffvm.controllers.cli import main

    argv = ["train", "increment", "--strategy", "soft", "--program-steps", "3", "--ops", "inc", "--updates", "10",
            "--restarts", "1", "--cells", "6", "--test-cells", "12", "--run-dir", str(tmp_path / "run"), "--quiet",
            "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cells"] == 6 and summary["test_cells"] == 12 and summary["updates"] == 10
    assert 0 <= summary["discretised_accuracy"] <= 1 and "mem::" in summary["program"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "metrics.jsonl", "summary.json"]
    with pytest.raises(SystemExit):
        main(argv)  # the run exists: refused, nothing overwritten
    assert "exists; choose another --run-dir" in capsys.readouterr().err


@pytest.mark.parametrize("name", MEMORY_TASKS)
def test_partial_credit_counts_scored_cells_and_is_one_only_for_exact_programs(name):
    task = get_memory_task(name)(8)
    examples = task.examples(np.random.default_rng(3), 40)
    assert task.partial_credit(_program(task, SOLUTIONS[name]), examples) == 1.0
    idle = _program(task, [("mem::read", "zero")])  # leaves the memory as it was
    unchanged = (examples.memory == examples.target) & examples.scored  # scored cells already right
    assert task.partial_credit(idle, examples) == pytest.approx(unchanged.sum() / examples.scored.sum())
    assert task.exact(idle, examples) < 1.0 and task.partial_credit(idle, examples) < 1.0


def test_partial_credit_of_swap_gives_half_a_swap_its_share():
    task = Swap(8)
    examples = task.examples(np.random.default_rng(0), 30)
    half = _program(task, SOLUTIONS["swap"][:5])  # cell p gets A[q]; cell q keeps its value
    rows = np.arange(30)
    same = examples.memory[rows, examples.memory[:, 0]] == examples.memory[rows, examples.memory[:, 1]]
    assert task.exact(half, examples) == pytest.approx(same.mean())  # right only where A[p] = A[q]
    # 5 array cells: 4 right, the fifth (cell q) where A[p] = A[q]
    assert task.partial_credit(half, examples) == pytest.approx(np.mean((4 + same) / 5))
    assert task.partial_credit(half, examples) > task.exact(half, examples)
