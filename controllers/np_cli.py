"""The Neural Programmer from the command line: `diffvm train table_qa`, and `diffvm eval` /
`diffvm inspect` of the runs it writes.

    diffvm train table_qa --families single --updates 2000 --seed 0 --run-dir runs/np/single_seed0
    diffvm eval runs/np/single_seed0                 # held-out accuracy, training and larger tables
    diffvm inspect runs/np/single_seed0 --seed 3     # one question: the choices, the program, a picture

A run directory holds `config.json` (the `NeuralProgrammerConfig`), `records.jsonl` (the held-out
checks during training), `model.pt` (the weights) and `results.json` (the final evaluation).
Held-out questions come from generators seeded apart from every training stream.

Splits (of `eval` and `inspect`): "train" is the training families on tables of the training
size, "larger" the same families on tables of `LARGER_ROWS_FACTOR` times as many rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffvm.controllers.neural_programmer import (
    NeuralProgrammer,
    NeuralProgrammerConfig,
    answer_correct,
    evaluate_np,
    plot_choices,
    save_run,
    train_neural_programmer,
)
from diffvm.programs.table_program import run_table_program
from diffvm.tasks.table_qa import (
    COMPOSITIONAL_FAMILIES,
    SINGLE_FAMILIES,
    TABLE_QA_TASK,
    TableQA,
    encode_questions,
)

__all__ = ["FAMILY_SETS", "NP_SPLITS", "NP_TASK", "add_np_train_arguments", "eval_np_run", "inspect_np_run",
           "is_np_run", "load_np_run", "train_np_run"]

NP_TASK = TABLE_QA_TASK  # `diffvm train table_qa`
FAMILY_SETS = {"single": SINGLE_FAMILIES, "compositional": COMPOSITIONAL_FAMILIES,
               "all": SINGLE_FAMILIES + COMPOSITIONAL_FAMILIES}
NP_SPLITS = ("train", "larger")
# "larger" tables: this many times the training rows (the paper's tables vary in size; we test 2×).
LARGER_ROWS_FACTOR = 2
# Seed offsets of the evaluation generators: apart from every training and checking stream
# (`train_neural_programmer` spawns its streams from the seed itself).
EVAL_SEED_OFFSET = 10_000
INSPECT_SEED_OFFSET = 20_000
# Config fields that are not command-line options: tuples and free-form notes.
_NOT_OPTIONS = ("ops", "families", "extra")
RUN_FILES = ("config.json", "model.pt", "records.jsonl")


def add_np_train_arguments(parser: argparse.ArgumentParser) -> None:
    """`diffvm train table_qa`'s options: the config's fields, the families, the evaluation size."""
    defaults = NeuralProgrammerConfig()
    group = parser.add_argument_group("NeuralProgrammerConfig options")
    for f in dataclasses.fields(NeuralProgrammerConfig):
        if f.name not in _NOT_OPTIONS:
            value = getattr(defaults, f.name)
            group.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value,
                               metavar=type(value).__name__.upper(), help=f"(default: {value!r})")
    group.add_argument("--families", choices=sorted(FAMILY_SETS), default="single",
                       help="question families trained on (default: single)")
    group.add_argument("--test-questions", type=int, default=1000,
                       help="held-out questions per split in the final evaluation (default: 1000)")


def _splits(config: NeuralProgrammerConfig) -> dict[str, int]:
    return {"train": config.rows, "larger": LARGER_ROWS_FACTOR * config.rows}


def _evaluate(model: NeuralProgrammer, splits, questions: int, seed: int) -> dict:
    """Soft and discretised accuracy per split, each split from its own seeded generator."""
    config, results = model.config, {}
    for i, (split, rows) in enumerate(_splits(config).items()):
        if split not in splits:
            continue
        rng = np.random.default_rng([seed, EVAL_SEED_OFFSET, i])
        sample = TableQA(config.task_config(rows=rows)).sample(rng, questions)
        results[split] = evaluate_np(model, sample) | {"rows": rows}
    return results


def _table(results: dict) -> str:
    lines = [f"{'split':8s} {'rows':>4s} {'soft':>7s} {'discretised':>12s}  questions"]
    for split, r in results.items():
        lines.append(f"{split:8s} {r['rows']:4d} {100 * r['soft']:6.1f}% {100 * r['discretised']:11.1f}%  "
                     f"{r['questions']}")
        lines += [f"    {family:28s} {100 * acc:5.1f}%" for family, acc in r["discretised_per_family"].items()]
    return "\n".join(lines)


def train_np_run(args: argparse.Namespace) -> int:
    """`diffvm train table_qa`: train, save the run, evaluate both splits, print the summary."""
    fields = [f.name for f in dataclasses.fields(NeuralProgrammerConfig) if f.name not in _NOT_OPTIONS]
    config = NeuralProgrammerConfig(**{k: getattr(args, k) for k in fields}, families=FAMILY_SETS[args.families])
    config.validate()
    if args.test_questions < 1:
        raise ValueError(f"--test-questions must be ≥ 1, got {args.test_questions}")
    out = args.run_dir or Path("runs") / NP_TASK
    if out.exists():
        raise ValueError(f"run directory {out} exists; choose another --run-dir")
    torch.set_num_threads(1)
    start = time.perf_counter()
    model, records = train_neural_programmer(config, progress=not args.quiet)
    seconds = time.perf_counter() - start
    save_run(model, records, out)
    results = _evaluate(model, NP_SPLITS, args.test_questions, config.seed)
    summary = {"task": NP_TASK, "families": args.families, "updates": config.updates, "seconds": round(seconds, 1),
               "threads": torch.get_num_threads(), "splits": results, "run_dir": str(out)}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_table(results))
        print(f"trained the Neural Programmer on {args.families}-op questions for {config.updates} updates in "
              f"{seconds:.0f} s (1 thread); run: {out}")
    return 0


def is_np_run(path: Path) -> bool:
    """Whether `path` is a run directory written by `diffvm train table_qa` (`save_run`)."""
    return all((Path(path) / name).is_file() for name in RUN_FILES)


def load_np_run(path: Path) -> NeuralProgrammer:
    """The trained model of a run directory; a bad or partial run raises `ValueError` naming the file."""
    path = Path(path)
    config_path = path / "config.json"
    try:
        data = json.loads(config_path.read_text())
        data["ops"], data["families"] = tuple(data["ops"]), tuple(data["families"])
        config = NeuralProgrammerConfig(**data)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{config_path}: not a Neural Programmer config ({e})") from e
    model = NeuralProgrammer(config)
    try:
        state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises many kinds for a truncated or foreign file
        raise ValueError(f"{path / 'model.pt'}: cannot load the weights ({type(e).__name__}: {e})") from e
    model.eval()
    return model


def _check_split(split: str) -> None:
    if split not in NP_SPLITS:
        raise ValueError(f"unknown split {split!r} for a Neural Programmer run; splits: {', '.join(NP_SPLITS)}")


def eval_np_run(args: argparse.Namespace) -> int:
    """`diffvm eval RUN` on a Neural Programmer run: both splits (or `--splits`), `--batch` questions each."""
    splits = tuple(args.splits) if args.splits else NP_SPLITS
    for split in splits:
        _check_split(split)
    model = load_np_run(args.run)
    results = _evaluate(model, splits, args.batch, args.seed)
    report = {"run": str(args.run), "task": NP_TASK, "questions": args.batch, "seed": args.seed, "splits": results}
    (Path(args.run) / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else _table(results))
    return 0


def inspect_np_run(args: argparse.Namespace) -> int:
    """`diffvm inspect RUN` on a Neural Programmer run: one question, the choices per step, the
    discretised program and its answer, and the picture of the op and column probabilities."""
    _check_split(args.split)
    model = load_np_run(args.run)
    config = model.config
    rows = _splits(config)[args.split]
    question = TableQA(config.task_config(rows=rows)).sample(
        np.random.default_rng([args.seed, INSPECT_SEED_OFFSET]), 1)[0]
    with torch.no_grad():
        out = model(encode_questions([question]))
    program = model.discretise(out, [question])[0]
    got = run_table_program(program, question.table, question.numbers, question.tokens)
    table = question.table
    print(f"# {question.family}: {question.text}")
    print("# table: " + " | ".join(table.names))
    for r in range(table.rows):
        print("  " + " | ".join(str(table.columns[name][r]) for name in table.names))
    print("# choices per step: the most probable op and column, with their probabilities")
    numeric = [table.names[j] for j in table.numeric_columns]
    for t, choice in enumerate(out.choices, start=1):
        op_p, op = choice.op[0].max(0)
        col_p, col = choice.numbers[0].max(0)
        print(f"  t={t}: {config.ops[int(op)]:12s} p={float(op_p):.2f}   column {numeric[int(col)]!r} "
              f"p={float(col_p):.2f}")
    print(f"# discretised program: {program}")
    print(f"# reference program:   {question.program}")
    verdict = "ok" if answer_correct(got, question) else "WRONG"
    if question.answer_kind == "scalar":
        print(f"# answer: {got.scalar:g} (expected {question.answer.scalar:g}) {verdict}")
    else:
        print(f"# answer cells: {sorted(got.cells)} (expected {sorted(question.answer.cells)}) {verdict}")
    out_dir = Path(args.out or Path(args.run) / "inspect")
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = out_dir / "choices.png"
    plot_choices(out, config.ops, question, picture)
    print(f"saved {picture}")
    sys.stdout.flush()
    return 0
