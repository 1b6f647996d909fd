"""The trainer and `diffvm train | eval | inspect`: runs, resume after a real kill, atomic
checkpoints, clear errors that touch nothing, and a two-process torchrun run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffvm.controllers import checkpoint as ckpt
from diffvm.controllers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffvm.controllers.cli import main
from diffvm.controllers.model import ModelConfig
from diffvm.controllers.trainer import TrainConfig, load_run, run_config, train
from diffvm.tasks import CopyConfig

# A copy task and an NTM small enough for an update to take a few milliseconds.
TINY = ["copy", "--width", "3", "--max-length", "3", "--eval-lengths", "3,6", "--curriculum-step", "1",
        "--memory", "ntm", "--memory-slots", "6", "--memory-width", "4", "--hidden", "12",
        "--eval-batch", "8", "--batch", "4", "--quiet"]


def _config(updates=30, **train_options) -> dict:
    train_options = {"batch": 4, "eval_batch": 8, "log_every": 5, "eval_every": 10, "checkpoint_every": 10,
                     **train_options}
    return run_config("copy", CopyConfig(width=3, max_length=3, eval_lengths="3,6", curriculum_step=1),
                      ModelConfig(hidden=12, memory="ntm", memory_slots=6, memory_width=4),
                      TrainConfig(updates=updates, **train_options))


def _records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock field, the one figure a rerun may change (and without
    a last line still being written)."""
    text = (run_dir / "metrics.jsonl").read_text()
    lines = text.splitlines()[: text.count("\n")]
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_a_run_directory_holds_config_metrics_and_checkpoint(tmp_path):
    summary = train(_config(), tmp_path / "run", quiet=True)
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "config.json").read_text()) == _config()
    records = _records(run_dir)
    train_updates = [r["update"] for r in records if r["kind"] == "train"]
    assert train_updates == [5, 10, 15, 20, 25, 30]
    evals = [(r["update"], r["split"]) for r in records if r["kind"] == "eval"]
    assert evals == [(u, s) for u in (10, 20, 30) for s in ("train", "length3", "length6")]
    assert {"loss", "task_loss", "bit_errors", "exact", "level", "grad_norm"} <= set(records[0])
    assert load_checkpoint(run_dir / "checkpoint.pt")["update"] == 30
    assert summary["eval"]["length6"]["hard"]["bit_errors"] >= 0
    assert not list(run_dir.glob(".*tmp"))  # no temporary checkpoint left behind


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(tmp_path):
    train(_config(updates=10), tmp_path / "a", quiet=True)
    train(_config(updates=10), tmp_path / "b", quiet=True)
    train(_config(updates=10, seed=1), tmp_path / "c", quiet=True)
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    assert _records(tmp_path / "a") != _records(tmp_path / "c")


def test_training_lowers_the_loss(tmp_path):
    # at a fixed level (no curriculum) so that losses are comparable
    train(_config(updates=150, log_every=10, eval_every=1000, curriculum=False, lr=1e-2), tmp_path / "run",
          quiet=True)
    losses = [r["task_loss"] for r in _records(tmp_path / "run") if r["kind"] == "train"]
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])


def test_the_curriculum_advances_and_its_level_is_logged(tmp_path):
    # every batch counts as solved enough: one level up per window of 2 batches
    train(_config(updates=12, curriculum_threshold=1e-9, curriculum_window=2, log_every=1), tmp_path / "run",
          quiet=True)
    levels = [r["level"] for r in _records(tmp_path / "run") if r["kind"] == "train"]
    assert levels[0] == 0 and levels == sorted(levels) and levels[-1] == 2  # copy lengths 1..3: 3 levels
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["curriculum"]["level"] == 2


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffvm.controllers.cli", *args]


def test_a_run_killed_by_a_signal_resumes_to_the_numbers_of_an_unbroken_run(tmp_path):
    updates = 120
    common = [*TINY, "--log-every", "5", "--eval-every", "40", "--checkpoint-every", "20"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the run to kill is asked for far more updates than it will live to see
    proc = subprocess.Popen(_cli("train", *common, "--updates", "100000", "--run-dir", str(tmp_path / "killed")),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = tmp_path / "killed"
    deadline = time.monotonic() + 120
    while True:  # freeze the run at a moment with records past its last checkpoint, then kill it
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()
        last = max((r["update"] for r in _records(killed)), default=0) if (killed / "metrics.jsonl").exists() else 0
        if last >= 45 and last % 20:
            proc.send_signal(signal.SIGSTOP)
            saved = load_checkpoint(killed / "checkpoint.pt")["update"]
            if max(r["update"] for r in _records(killed)) > saved:
                break
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    assert 40 <= saved < updates

    resumed = subprocess.run(_cli("train", *common, "--updates", str(updates), "--run-dir", str(tmp_path / "killed"),
                                  "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    unbroken = subprocess.run(
        _cli("train", *common, "--updates", str(updates), "--run-dir", str(tmp_path / "unbroken")),
        env=env, capture_output=True, text=True)
    assert unbroken.returncode == 0, unbroken.stderr
    # the records past the checkpoint are dropped on resume, and every record equals the unbroken run's
    assert _records(tmp_path / "killed") == _records(tmp_path / "unbroken")
    a = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "unbroken" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_write_cut_half_way_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    payload = {k: {} for k in ckpt.REQUIRED_KEYS if k != "format"}
    save_checkpoint(path, {**payload, "update": 1})

    def dies_half_way(obj, f):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(ckpt.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {**payload, "update": 2})
    assert load_checkpoint(path)["update"] == 1
    assert list(tmp_path.iterdir()) == [path]  # and the half-written temporary file is gone


def test_a_truncated_or_foreign_checkpoint_is_refused_by_name(tmp_path):
    train(_config(updates=10), tmp_path / "run", quiet=True)
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_run(tmp_path / "run")
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)


@pytest.fixture
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "copy"
    assert main(["train", *TINY, "--updates", "10", "--eval-every", "10", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize("argv, message", [
    (["train", "nosuch"], "unknown task 'nosuch'; known tasks: access, addition, anb2n, anbmcnm"),
    (["train", *TINY, "--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
    (["train", *TINY, "--hidden", "many"], "argument --hidden: invalid int value: 'many'"),
    (["train", *TINY, "--hidden", "0"], "ModelConfig.hidden = 0"),
    (["train", *TINY, "--memory", "tape"], "ModelConfig.memory = 'tape'"),
    (["train", *TINY, "--max-length", "0"], "CopyConfig"),
    (["train", *TINY, "--lr", "-1"], "TrainConfig.lr = -1.0"),
    (["train", *TINY, "--max-seconds", "-1"], "TrainConfig.max_seconds = -1.0"),
    (["train", *TINY, "--memory", "stack", "--memory-slots", "5"], "ModelConfig.memory_slots = 5"),  # 13 steps
    (["train", *TINY, "--memory", "dnc", "--ops", "arith::add", "--machine-memory"], "exposes no machine ops"),
    (["train", *TINY, "--ops", "arith::nosuch"], "arith::nosuch"),
])
def test_bad_command_lines_are_named_and_touch_nothing(argv, message, finished_run, capsys):
    root = finished_run.parent
    before = _snapshot(root)
    with pytest.raises(SystemExit) as e:
        main([*argv, "--run-dir", str(root / "new")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert _snapshot(root) == before


def test_a_run_resumed_at_its_last_update_reports_its_last_evaluation(tmp_path):
    """Stopping a run early: kill it, then resume with --updates at its checkpoint."""
    run_dir = tmp_path / "run"
    first = train(_config(updates=20), run_dir, quiet=True)
    before = _records(run_dir)
    again = train(_config(updates=20), run_dir, resume=True, quiet=True)
    assert again["eval"] == first["eval"] and set(first["eval"]) == {"train", "length3", "length6"}
    assert _records(run_dir) == before
    with pytest.raises(ValueError, match="at update 20, past TrainConfig.updates = 10"):
        train(_config(updates=10), run_dir, resume=True, quiet=True)
    assert _records(run_dir) == before


def test_a_time_limit_stops_the_run_with_an_evaluation_and_a_checkpoint_and_resume_goes_on(tmp_path):
    """--max-seconds: any update takes more than a microsecond, so the run stops after its first."""
    run_dir = tmp_path / "run"
    first = train(_config(updates=20, max_seconds=1e-6), run_dir, quiet=True)
    assert first["updates"] == 1 and first["time_limited"]
    assert set(first["eval"]) == {"train", "length3", "length6"}
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["update"] == 1
    before = _records(run_dir)
    again = train(_config(updates=20, max_seconds=1e-6), run_dir, resume=True, quiet=True)  # out of time already
    assert again["updates"] == 1 and again["eval"] == first["eval"] and _records(run_dir) == before
    rest = train(_config(updates=20), run_dir, resume=True, quiet=True)  # no limit: on to update 20
    assert rest["updates"] == 20 and not rest["time_limited"]
    unbroken = tmp_path / "unbroken"
    train(_config(updates=20), unbroken, quiet=True)
    assert [r for r in _records(run_dir) if r["update"] > 1] == [r for r in _records(unbroken) if r["update"] > 1]


def test_a_run_is_not_overwritten_nor_resumed_under_other_options(finished_run, capsys):
    before = _snapshot(finished_run)
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--updates", "10", "--run-dir", str(finished_run)])
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--hidden", "13", "--run-dir", str(finished_run), "--resume"])
    assert "model.hidden: checkpoint 12, run 13" in capsys.readouterr().err
    assert _snapshot(finished_run) == before


def test_a_corrupt_checkpoint_stops_resume_and_eval_and_touches_nothing(finished_run, capsys):
    (finished_run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = _snapshot(finished_run)
    for argv in (["train", *TINY, "--updates", "20", "--eval-every", "10", "--run-dir", str(finished_run), "--resume"],
                 ["eval", str(finished_run)], ["inspect", str(finished_run)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "is corrupt or truncated" in capsys.readouterr().err
    assert _snapshot(finished_run) == before


def test_eval_reports_soft_and_discretised_figures_per_split(finished_run, capsys):
    assert main(["eval", str(finished_run), "--batch", "16"]) == 0
    out = capsys.readouterr().out
    assert "length6" in out and "discretised" in out
    report = json.loads((finished_run / "eval.json").read_text())
    assert set(report["splits"]) == {"train", "length3", "length6"}
    assert set(report["splits"]["length6"]) == {"soft", "hard"}


def test_inspect_prints_the_trace_and_saves_pictures(finished_run, capsys):
    assert main(["inspect", str(finished_run), "--split", "length3"]) == 0
    out = capsys.readouterr().out
    assert "discretised trace" in out and "scored" in out
    pictures = sorted(p.name for p in (finished_run / "inspect").iterdir())
    assert pictures == ["sequences.png", "weightings.png"]
    assert all((finished_run / "inspect" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)


def test_two_torchrun_processes_train_and_save_one_checkpoint(tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "diffvm.controllers.cli", "train", *TINY, "--updates", "6", "--log-every", "2",
         "--eval-every", "6", "--checkpoint-every", "3", "--run-dir", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "abort" not in result.stderr.lower()
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    payload = load_checkpoint(run_dir / "checkpoint.pt")
    assert payload["update"] == 6
    assert len(payload["data_rng"]) == 2 and payload["data_rng"][0] != payload["data_rng"][1]
    assert [r["update"] for r in _records(run_dir) if r["kind"] == "train"] == [2, 4, 6]
    assert result.stdout.count("trained copy") == 1  # process 0 alone reports
