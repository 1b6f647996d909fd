"""`diffvm train | eval | inspect`: training runs from the command line, their options generated
from the configuration dataclasses.

    diffvm train copy --memory ntm --updates 2000 --run-dir runs/copy     # options: diffvm train copy --help
    diffvm train access --strategy soft --program-steps 4   # NRAM-style memory tasks: program induction
    diffvm train copy --memory ntm --updates 2000 --run-dir runs/copy --resume   # after a kill
    torchrun --nproc-per-node 2 -m diffvm.controllers.cli train copy ...     # data-parallel
    diffvm eval runs/copy                 # every split, soft and discretised
    diffvm inspect runs/copy              # one example: the trace, the program, PNG pictures
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from diffvm.controllers.induce import InductionConfig, induce
from diffvm.controllers.model import ModelConfig, StepRecord
from diffvm.controllers.np_cli import (
    NP_TASK,
    add_np_train_arguments,
    eval_np_run,
    inspect_np_run,
    is_np_run,
    train_np_run,
)
from diffvm.controllers.pictures import Recording, save_pictures
from diffvm.controllers.trainer import TrainConfig, evaluate, load_run, run_config, train
from diffvm.programs import discretise
from diffvm.tasks import MEMORY_TASKS, TASKS
from diffvm.tasks.nram import MemoryTaskConfig, resize_program

__all__ = ["add_run_parsers", "run_command", "recording"]

# Problems a memory task's discretised program is scored on, at the training size and the test size.
MEMORY_TEST_PROBLEMS = 1000
# Device state fields drawn as weightings over memory slots (one row per head).
WEIGHTING_FIELDS = ("read_weights", "write_weights", "strengths", "usage")


def add_run_parsers(subparsers, task: str | None, add_config_arguments) -> None:
    """Add `train`, `eval` and `inspect` to the `diffvm` parser; `train`'s task options are those
    of `task` (the word after `train` on the command line), when it names a known task."""
    known = ", ".join(sorted([*TASKS, *MEMORY_TASKS, NP_TASK]))
    p = subparsers.add_parser("train", help="train a model on a task; the run directory can be resumed",
                              description=f"Train a controller (with a memory, a machine, halting) on a task. "
                              f"Tasks: {known}. `diffvm train TASK --help` lists the task's own options.")
    p.add_argument("task", metavar="TASK", help=f"the task: {known}")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default: runs/TASK)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint (same options but --updates)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    if task == NP_TASK:  # the Neural Programmer: its own model and training
        add_np_train_arguments(p)
        return _add_inspection_parsers(subparsers)
    if task in MEMORY_TASKS:  # a program is induced: the induction options, not a model's
        add_config_arguments(p, MemoryTaskConfig)
        add_config_arguments(p, InductionConfig)
        return _add_inspection_parsers(subparsers)
    recipe = TASKS[task].recipe if task in TASKS else None
    if task in TASKS:
        add_config_arguments(p, TASKS[task].Config, recipe)
    add_config_arguments(p, ModelConfig, recipe)
    add_config_arguments(p, TrainConfig, recipe)
    _add_inspection_parsers(subparsers)


def _add_inspection_parsers(subparsers) -> None:

    e = subparsers.add_parser("eval", help="evaluate a run's last checkpoint on every split",
                              description="Evaluate a run's last checkpoint on each split of its task, with the "
                              "soft model and discretised (hardened devices, one-hot instructions, hard halting).")
    e.add_argument("run", type=Path, metavar="RUN", help="the run directory")
    e.add_argument("--splits", nargs="+", default=None, metavar="S", help="splits (default: all)")
    e.add_argument("--batch", type=int, default=1000, help="sequences per split (default: 1000)")
    e.add_argument("--seed", type=int, default=1, help="seed of the evaluation data (default: 1)")
    e.add_argument("--json", action="store_true", help="print the results as JSON")

    i = subparsers.add_parser("inspect", help="replay one example: the discretised trace and PNG pictures",
                              description="Replay one example through a run's last checkpoint; print the "
                              "discretised program or trace and save pictures of the weightings, instruction "
                              "probabilities and ponder counts.")
    i.add_argument("run", type=Path, metavar="RUN", help="the run directory")
    i.add_argument("--split", default="train", help="the split the example comes from (default: train)")
    i.add_argument("--seed", type=int, default=0, help="seed of the example (default: 0)")
    i.add_argument("--out", type=Path, default=None, help="where the pictures go (default: RUN/inspect)")


def run_command(args: argparse.Namespace, config_from_args) -> int:
    """Run `train`, `eval` or `inspect` for parsed arguments; returns the exit status."""
    if args.command == "train" and args.task == NP_TASK:
        return train_np_run(args)
    if args.command in ("eval", "inspect") and is_np_run(args.run):
        return eval_np_run(args) if args.command == "eval" else inspect_np_run(args)
    if args.command == "train" and args.task in MEMORY_TASKS:
        return _induce_memory_task(args, config_from_args)
    if args.command == "train":
        task_cls = TASKS[args.task]
        config = run_config(args.task, config_from_args(task_cls.Config, args),
                            config_from_args(ModelConfig, args), config_from_args(TrainConfig, args))
        summary = train(config, args.run_dir or Path("runs") / args.task, resume=args.resume, quiet=args.quiet)
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, process 0 speaks
            print(json.dumps(summary, indent=2) if args.json else _train_line(summary))
        return 0
    run = load_run(args.run)
    if args.command == "eval":
        splits = tuple(args.splits) if args.splits else None
        results = evaluate(run.model, run.task, batch=args.batch, seed=args.seed, update=run.update, splits=splits)
        report = {"run": str(args.run), "task": run.task.name, "update": run.update, "batch": args.batch,
                  "seed": args.seed, "splits": results}
        (args.run / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2) if args.json else _eval_table(report))
        return 0
    return _inspect(run, args)


def _induce_memory_task(args: argparse.Namespace, config_from_args) -> int:
    """`diffvm train access|swap|increment`: induce a program, test it discretised at both sizes."""
    task_cfg, cfg = config_from_args(MemoryTaskConfig, args), config_from_args(InductionConfig, args)
    task = MEMORY_TASKS[args.task](task_cfg.cells, task_cfg.parsed_ops())
    out = args.run_dir or Path("runs") / args.task
    if out.exists():
        raise ValueError(f"run directory {out} exists; choose another --run-dir")
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(
        {"task": args.task, "memory": dataclasses.asdict(task_cfg), "induction": dataclasses.asdict(cfg)}, indent=2))
    with open(out / "metrics.jsonl", "w") as metrics, tqdm(total=cfg.updates * cfg.restarts, unit="upd",
                                                          disable=args.quiet, file=sys.stderr) as bar:
        result = induce(task, cfg, log=lambda r: metrics.write(json.dumps(r) + "\n"), progress=bar.update)
    rng = np.random.default_rng([cfg.seed, 1])  # held-out problems: not the training draws
    train_acc = task.exact(result.program, task.examples(rng, MEMORY_TEST_PROBLEMS))
    big = resize_program(result.program, task_cfg.test_cells)
    test_acc = task.exact(big, task.examples(rng, MEMORY_TEST_PROBLEMS, task_cfg.test_cells))
    summary = {"task": args.task, "solved_on_training_data": result.solved, "sampled": result.sampled,
               "restart": result.restart,
               "updates": result.total_updates, "seconds": round(result.seconds, 1), "cells": task_cfg.cells,
               "discretised_accuracy": train_acc, "test_cells": task_cfg.test_cells,
               "discretised_accuracy_test_cells": test_acc, "program": result.program.listing(),
               "program_json": result.program.to_dict(), "run_dir": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(summary["program"])
        print(f"{args.task}: {'solved' if result.solved else 'not solved'} after {result.total_updates} updates "
              f"({summary['seconds']} s); discretised accuracy {100 * train_acc:.1f}% at {task_cfg.cells} cells, "
              f"{100 * test_acc:.1f}% at {task_cfg.test_cells} cells; run: {out}")
    return 0


def _train_line(summary: dict) -> str:
    figures = "; ".join(f"{split}: {_figures(r['soft'])} (discretised {_figures(r['hard'])})"
                        for split, r in summary["eval"].items())
    limit = " (stopped at the time limit)" if summary.get("time_limited") else ""
    return (f"trained {summary['task']} for {summary['updates']} updates{limit} in {summary['seconds']} s "
            f"({summary['processes']} process(es), {summary['threads']} thread(s)); {figures}; "
            f"run: {summary['run_dir']}")


def _figures(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())


def _eval_table(report: dict) -> str:
    keys = list(next(iter(report["splits"].values()))["soft"])
    rows = [["split", "model", *keys]]
    for split, r in report["splits"].items():
        for kind in ("soft", "hard"):
            rows.append([split, "soft" if kind == "soft" else "discretised", *(f"{r[kind][k]:.4g}" for k in keys)])
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    return (f"# {report['task']}, {report['run']} at update {report['update']}, {report['batch']} sequences "
            f"per split (seed {report['seed']})\n" + "\n".join(lines))


def recording(run, split: str, seed: int, *, mode: str = "eval") -> tuple[Recording, list[StepRecord], object]:
    """Replay one example of `split`; its `Recording` for the pictures, the step records, the batch."""
    data = run.task.sample_split(np.random.default_rng(seed), 1, split)
    steps: list[StepRecord] = []
    with torch.no_grad():
        out = run.model(data.inputs, mode=mode, generator=torch.Generator().manual_seed(seed), record=steps)
    probs = run.task.probabilities(out.logits[0])
    weightings: dict[str, list[np.ndarray]] = {}
    for rec in steps:
        state = rec.device_state
        if isinstance(state, dict):  # the machine's devices, by name
            items = [(f"{name} {f}", getattr(s, f)) for name, s in state.items() for f in getattr(s, "_fields", ())]
        else:
            items = [(f, getattr(state, f)) for f in getattr(state, "_fields", ())]
        for title, value in items:
            if title.split(" ")[-1] in WEIGHTING_FIELDS and isinstance(value, torch.Tensor) and value.dim() in (1, 2):
                weightings.setdefault(title.replace("_", " "), []).append(value.reshape(-1, value.shape[-1]).numpy())
    model = run.model
    machine = model.machine
    rec = Recording(
        inputs=data.inputs[0].numpy(), targets=data.targets[0].numpy(), outputs=probs.numpy(),
        mask=data.mask[0].numpy(),
        ponder_steps=out.steps[0].round().long().numpy() if model.cfg.halting != "none" or model.cfg.max_ponder > 1
        else None,
        weightings={k: np.stack(v) for k, v in weightings.items() if len({x.shape for x in v}) == 1},
        instructions=np.stack([r.instruction.op[0].numpy() for r in steps]) if machine is not None else None,
        op_names=[op.name for op in machine.opset] if machine is not None else [],
        step_of=np.array([r.input_step for r in steps]),
    )
    rec.validate()
    return rec, steps, data


def _cells(values: torch.Tensor) -> str:
    """A step's values as one character each: 0, 1, - for −1, ? for anything else."""
    return "".join({0.0: "0", 1.0: "1", -1.0: "-"}.get(float(v), "?") for v in values.tolist())


def _inspect(run, args: argparse.Namespace) -> int:
    run.task.check_split(args.split)
    rec, _, data = recording(run, args.split, args.seed)
    _, hard_steps, _ = recording(run, args.split, args.seed, mode="hard")
    with torch.no_grad():
        hard = run.model(data.inputs, mode="hard")
    predicted = run.task.predict(hard.logits)[0]
    print(f"# {run.task.name}, {args.run} at update {run.update}; one example of split {args.split!r} "
          f"(seed {args.seed}), {data.inputs.shape[1]} input steps")
    print("# discretised trace: step, ponder steps, input, scored?, target, discretised output")
    for t in range(data.inputs.shape[1]):
        target, got = _cells(data.targets[0, t]), _cells(predicted[t])
        mark = "" if not data.mask[0, t] else ("ok" if target == got else "WRONG")
        print(f"{t:4d}  {int(hard.steps[0, t]):2d}  {_cells(data.inputs[0, t])}  "
              f"{'scored' if data.mask[0, t] else '      '}  {target}  {got}  {mark}")
    if run.model.machine is not None:
        print("# discretised program per input step (ponder steps run before halting)")
        for t in range(data.inputs.shape[1]):
            trace = [r.instruction for r in hard_steps if r.input_step == t][: int(hard.steps[0, t])]
            steps = discretise(run.model.machine, trace).steps
            print(f"t={t}: " + "; ".join(f"s{n} = {step}" for n, step in enumerate(steps, start=1)))
    out_dir = args.out or args.run / "inspect"
    for path in save_pictures(rec, out_dir):
        print(f"saved {path}")
    return 0
