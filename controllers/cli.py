"""The `diffvm` command line: a thin face over the library, its options generated from configs.

    diffvm demo [--json] [--functions "(a+b)*c" ...] [--out DIR] [InductionConfig options]
    diffvm exec FILE                          # a Learning-to-Execute snippet (exec_cli.py)
    diffvm train TASK [options] | eval RUN | inspect RUN    (run_cli.py)
    diffvm eval l2e RUN --points 4x1 4x2 --snippets 1000   # Learning to Execute (l2e_eval.py)
    diffvm curves RUN [RUN ...] [--out FILE.png]           # learning curves (curves.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from diffvm.controllers.checkpoint import CheckpointError
from diffvm.controllers.exec_cli import add_exec_parser, run_exec
from diffvm.controllers.induce import InductionConfig, InductionResult, evaluate_program, induce
from diffvm.controllers.l2e_eval import l2e_eval_parser, run_l2e_eval
from diffvm.controllers.model import ModelConfig
from diffvm.controllers.trainer import TrainConfig
from diffvm.tasks import FAMILY, MEMORY_TASKS, TASKS, ArithmeticTask
from diffvm.tasks.table_qa import TABLE_QA_TASK

__all__ = ["main", "add_config_arguments", "config_from_args", "run_demo"]

# Held-out inputs the demo scores each discretised program on.
HELDOUT_EXAMPLES = 1000
_FIELD_COMMENT = re.compile(r"^\s+(\w+):.*?#\s*(.+)$")


def _field_help(cls) -> dict[str, str]:
    """Each field's trailing comment in the dataclass source: the config documents itself once."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in map(_FIELD_COMMENT.match, source.splitlines()) if m}


def add_config_arguments(parser: argparse.ArgumentParser, cls, recipe: dict | None = None) -> None:
    """One `--field-name` option per field of dataclass `cls`, with its default and comment.

    `recipe` (a task's, field name -> value) replaces the defaults of the fields it names; the help
    shows both. Names that are not fields of `cls` are ignored (a recipe spans several configs).
    """
    helps = _field_help(cls)
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        in_recipe = recipe is not None and f.name in recipe
        default = recipe[f.name] if in_recipe else f.default
        shown = f"{default!r}, this task's recipe; generic: {f.default!r}" if in_recipe else repr(default)
        text = f"{helps.get(f.name, '')} (default: {shown})"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            group.add_argument(flag, type=kind, default=default, metavar=kind.__name__.upper(), help=text)


def config_from_args(cls, args: argparse.Namespace):
    """The dataclass built from parsed options; its `validate()` names a bad field."""
    cfg = cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
    cfg.validate()
    return cfg


def _soft_accuracy(result: InductionResult, task: ArithmeticTask, inputs, target) -> float:
    """Accuracy of the soft machine run on the controller's distributions (rounded answers)."""
    with torch.no_grad():
        _, trace = result.controller(lambda t, lg: lg.softmax())
        batch = [i.expand(len(target)) for i in trace]
        out, _ = result.machine.run(batch, {k: torch.as_tensor(v) for k, v in inputs.items()})
    return float(task.rounded_match(out.numpy(), target).mean())


def run_demo(cfg: InductionConfig, functions: Sequence[str], out: Path, *, quiet: bool = False) -> dict:
    """Induce a program for each function, test it on held-out larger inputs, save the run."""
    unknown = [f for f in functions if f not in FAMILY]
    if unknown:
        raise ValueError(f"unknown function(s) {unknown}; known: {', '.join(FAMILY)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(
        {"induction": dataclasses.asdict(cfg), "functions": list(functions)}, indent=2))
    start = time.perf_counter()
    rows = []
    with open(out / "metrics.jsonl", "w") as metrics:
        log = lambda record: metrics.write(json.dumps(record) + "\n")  # noqa: E731
        for name in functions:
            task = ArithmeticTask(name)
            with tqdm(total=cfg.updates * cfg.restarts, desc=f"{name:>8}", unit="upd",
                      disable=quiet, leave=True, file=sys.stderr) as bar:
                result = induce(task, cfg, log=log, progress=bar.update)
                bar.total = bar.n  # solved early: the bar ends where the search ended
                bar.refresh()
            inputs, target = task.sample(np.random.default_rng([cfg.seed, 1]), HELDOUT_EXAMPLES, heldout=True)
            rows.append({
                "function": name,
                "solved_on_training_data": result.solved,
                "restart": result.restart,
                "steps": result.total_updates,
                "seconds": round(result.seconds, 2),
                "soft_accuracy": _soft_accuracy(result, task, inputs, target),
                "discretised_accuracy": evaluate_program(result.program, task, inputs, target),
                "program": result.program.listing(),
                "program_json": result.program.to_dict(),
            })
            log({"function": name, "final": True, **{k: v for k, v in rows[-1].items() if k != "program_json"}})
    summary = {
        "task": "arithmetic",
        "heldout": f"{HELDOUT_EXAMPLES} inputs of magnitude {task.scale + 1}..{task.scale * task.heldout_factor}"
                   f" (training: 0..{task.scale})",
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "steps": sum(r["steps"] for r in rows),
        "seconds": round(time.perf_counter() - start, 1),
        "functions": rows,
        "run_dir": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _summary_line(summary: dict) -> str:
    parts = [f"{r['function']} {100 * r['discretised_accuracy']:.1f}%" for r in summary["functions"]]
    good = sum(r["discretised_accuracy"] >= 0.99 for r in summary["functions"])
    return (f"demo: {good}/{len(summary['functions'])} functions solved; discretised accuracy on held-out "
            f"10x larger inputs: {', '.join(parts)}; {summary['steps']} updates, {summary['seconds']} s")


def _parser(task: str | None = None) -> argparse.ArgumentParser:
    try:
        v = version("diffvm")
    except PackageNotFoundError:
        v = "unknown (not installed)"
    parser = argparse.ArgumentParser(prog="diffvm", description="diffvm: a differentiable virtual machine")
    parser.add_argument("--version", action="version", version=f"diffvm {v}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="learn the arithmetic family from answers alone, print the programs",
                          description="An LSTM controller learns, from input/output pairs alone, a two-step "
                          "program for each function; the discretised program is run by the hard "
                          "interpreter on held-out inputs 10x larger than any seen in training.")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    demo.add_argument("--functions", nargs="+", default=list(FAMILY), metavar="F",
                      help=f"functions to learn (default: all of {', '.join(FAMILY)})")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default: runs/demo)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(demo, InductionConfig)
    add_exec_parser(sub)
    from diffvm.controllers.curves import add_curves_parser  # these import matplotlib: only when building the parser
    from diffvm.controllers.run_cli import add_run_parsers

    add_run_parsers(sub, task, add_config_arguments)
    add_curves_parser(sub)
    sub.choices["eval"].epilog = ("diffvm eval l2e RUN [--points LxN ...] scores an l2e run on held-out snippets: "
                                  "teacher-forced per-character accuracy and greedy exact match "
                                  "(`diffvm eval l2e --help`; a run directory named l2e: ./l2e).")
    return parser


def _train_task(argv: Sequence[str]) -> str | None:
    """The task `train` is asked for, so that the parser can offer that task's own options."""
    if "train" not in argv:
        return None
    quiet = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    sub = quiet.add_subparsers(dest="command")
    train = sub.add_parser("train", add_help=False, exit_on_error=False)
    train.add_argument("task", nargs="?")
    for flag in ("--run-dir", *(f"--{f.name.replace('_', '-')}" for cls in (ModelConfig, TrainConfig)
                            for f in dataclasses.fields(cls) if f.type not in ("bool", bool))):
        train.add_argument(flag)
    try:
        known, _ = quiet.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    except (argparse.ArgumentError, SystemExit):
        return None
    return getattr(known, "task", None)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `diffvm inspect RUN | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout at exit
        return 1


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["eval", "l2e"]:  # `diffvm eval l2e RUN`: its own options, not those of `eval RUN`
        parser = l2e_eval_parser()
        args = parser.parse_args(argv[2:])
        try:
            return run_l2e_eval(args)
        except (ValueError, CheckpointError) as e:
            parser.exit(2, f"diffvm eval l2e: error: {e}\n")
    task = _train_task(argv)
    parser = _parser(task)
    if task is not None and task not in (*TASKS, *MEMORY_TASKS, TABLE_QA_TASK) and not {"-h", "--help"} & set(argv):
        known = ", ".join(sorted([*TASKS, *MEMORY_TASKS, TABLE_QA_TASK]))
        parser.exit(2, f"diffvm train: error: unknown task {task!r}; known tasks: {known}\n")
    args = parser.parse_args(argv)
    if args.command == "exec":
        return run_exec(args)
    if args.command == "curves":
        from diffvm.controllers.curves import curves_command

        try:
            return curves_command(args)
        except ValueError as e:
            parser.exit(2, f"diffvm curves: error: {e}\n")
    if args.command in ("train", "eval", "inspect"):
        from diffvm.controllers.run_cli import run_command

        try:
            return run_command(args, config_from_args)
        except (ValueError, CheckpointError) as e:
            parser.exit(2, f"diffvm {args.command}: error: {e}\n")
    try:
        cfg = config_from_args(InductionConfig, args)
        summary = run_demo(cfg, args.functions, args.out, quiet=args.quiet)
    except ValueError as e:
        parser.exit(2, f"diffvm {args.command}: error: {e}\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for row in summary["functions"]:
            print(f"\n# {row['function']}  (soft {100 * row['soft_accuracy']:.1f}%, "
                  f"discretised {100 * row['discretised_accuracy']:.1f}% on held-out inputs)")
            print(row["program"])
        print()
        print(_summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
