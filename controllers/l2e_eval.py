"""`diffvm eval l2e RUN`: score a model trained on `l2e` on held-out snippets at chosen (length, nesting).

    diffvm eval l2e runs/l2e --points 4x1 4x2 4x3 --snippets 1000 --seed 0 [--json]

Two figures per point, side by side (Zaremba & Sutskever 2014 report the first only):

- *teacher-forced per-character accuracy*, the paper's metric: the answer is fed in with the
  correct previous character at each step (as in training) and every answer character the model
  gets right counts, over all the point's snippets;
- *greedy exact match*: after the program, the model is fed its own previous prediction (the
  argmax), from the GO step until it writes "." or has written as many characters as the target
  (a longer answer cannot be right); a snippet counts when the answer equals the target.

A model answering right is fed exactly the teacher-forced inputs, so greedy exact match equals the
fraction of snippets whose teacher-forced answer is right in every character (for a model without
sampling; PonderNet samples its halting): one figure, not two, and a check of the decoder.

Greedy decoding runs the model one step at a time over the whole batch, carrying its recurrent
state (`MemoryModel.forward(..., carry=...)`): every example reads its program, then its own
outputs, in one pass of max |P| + |A| single steps. The held-out snippets of a point come from a
generator seeded by (seed, length, nesting), apart from the training stream, and only from the hash
split "test" (`diffvm.tasks.l2e.split_of`): never a program trained on or validated on.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from diffvm.controllers.model import MemoryModel
from diffvm.controllers.trainer import load_run
from diffvm.tasks.l2e import VOCABULARY, Example, encode
from diffvm.tasks.l2e_task import INPUT_SIZE, PHASE, L2ETask, encode_examples, parse_point

__all__ = ["evaluate_l2e", "evaluate_l2e_run", "greedy_decode", "l2e_eval_parser", "run_l2e_eval",
           "teacher_forced_counts"]

TEST_HASH_SPLIT = "test"  # the hash split (`split_of`) the held-out snippets come from
# The seed stream of held-out snippets: (seed, length, nesting, this). The trainer's streams are
# (seed, rank) for training and (seed, update, split, 1) for its evaluations.
HELDOUT_STREAM = 7
STOP = VOCABULARY.index(".")  # the character that ends an answer
REPORT_FILE = "eval_l2e.json"  # written into the run directory, beside `diffvm eval`'s eval.json


def teacher_forced_counts(model, examples: Sequence[Example], *, generator: torch.Generator | None = None,
                          device=None) -> tuple[int, int, int]:
    """(answer characters right, answer characters, answers right in full) with teacher forcing.

    The batch is `encode_examples(examples)`: the correct previous character is fed at each answer
    step; a character is right when the argmax of the model's logits is the target's.
    """
    data = encode_examples(examples).to(device)
    with torch.no_grad():
        logits = model(data.inputs, mode="eval", generator=generator).logits  # (B, T, O)
    mask = data.mask > 0  # (B, T)
    right = (logits.argmax(-1) == data.targets.argmax(-1)) & mask  # (B, T)
    return int(right.sum()), int(mask.sum()), int((right.sum(1) == mask.sum(1)).sum())


def greedy_decode(model, examples: Sequence[Example], *, generator: torch.Generator | None = None,
                  device=None, dtype=torch.float32) -> list[str]:
    """Each example's answer decoded greedily: after its program, the model reads its own last output.

    One step at a time over the batch, carrying the model's state: at step t an example reads its
    program's t-th character, then the GO symbol (the phase bit alone), then the phase bit and its
    previous prediction. An answer ends with the first "." or after as many characters as the
    target has (module docstring).

    Args:
        model: anything with `initial_carry(B, device=, dtype=)` and `model(x, mode=, generator=,
            carry=)` returning logits (B, 1, O) and the next carry, as `MemoryModel` does.
    Returns:
        the decoded answers, "." included when the model wrote it.
    """
    programs = [encode(e.text) for e in examples]
    starts = np.array([len(p) for p in programs])  # (B,) |P|: the GO step of each example
    caps = np.array([len(e.target) for e in examples])  # (B,) |A|
    batch, steps = len(examples), int((starts + caps).max())
    carry = model.initial_carry(batch, device=device, dtype=dtype)
    previous = np.zeros(batch, dtype=np.int64)  # (B,) each example's last prediction
    answers: list[list[int]] = [[] for _ in examples]
    rows = np.arange(batch)
    with torch.no_grad():
        for t in range(steps):
            x = np.zeros((batch, INPUT_SIZE), dtype=np.float32)  # (B, I)
            reading = t < starts
            x[rows[reading], [programs[b][t] for b in rows[reading]]] = 1
            x[t >= starts, PHASE] = 1
            feeding = t > starts  # after GO: the previous prediction
            x[rows[feeding], previous[feeding]] = 1
            out = model(torch.from_numpy(x).to(device=device, dtype=dtype).unsqueeze(1), mode="eval",
                        generator=generator, carry=carry)
            carry = out.carry
            previous = out.logits[:, 0].argmax(-1).cpu().numpy()  # (B,)
            for b in rows[(t >= starts) & (t < starts + caps)]:
                if not answers[b] or answers[b][-1] != STOP:  # an answer ends at its first "."
                    answers[b].append(int(previous[b]))
    return ["".join(VOCABULARY[i] for i in answer) for answer in answers]


def evaluate_l2e(model: MemoryModel, task: L2ETask, points: Sequence[tuple[int, int]], *, snippets: int = 1000,
                 seed: int = 0, batch: int = 100, device=None) -> list[dict]:
    """Per point (length, nesting): held-out snippets scored teacher-forced and greedily (module docstring).

    Returns:
        one record per point: point "LxN", length, nesting, snippets, teacher_forced_accuracy,
        greedy_exact.
    """
    if not isinstance(task, L2ETask):
        raise ValueError(f"evaluate_l2e scores the l2e task, got task {task.name!r}")
    if snippets < 1 or batch < 1:
        raise ValueError(f"snippets and batch must be ≥ 1, got snippets={snippets}, batch={batch}")
    if task.config.problem != "programs" and any(n != 1 for _, n in points):
        raise ValueError(f"points {points}: {task.config.problem} has no nesting; use LENGTHx1")
    dtype = next(model.parameters()).dtype
    results = []
    for length, nesting in points:
        rng = np.random.default_rng([seed, length, nesting, HELDOUT_STREAM])
        examples = task.point_examples(rng, snippets, length, nesting, TEST_HASH_SPLIT)
        model.cfg.check_length(max(len(e.text) + len(e.target) for e in examples))
        right = chars = greedy = 0
        for i in range(0, snippets, batch):
            chunk = examples[i:i + batch]
            # PonderNet samples its halting steps: the same generator state for both passes of a chunk
            gen = torch.Generator(device=device or "cpu").manual_seed(seed * 1_000_003 + i)
            r, c, _ = teacher_forced_counts(model, chunk, generator=gen, device=device)
            right, chars = right + r, chars + c
            gen.manual_seed(seed * 1_000_003 + i)
            answers = greedy_decode(model, chunk, generator=gen, device=device, dtype=dtype)
            greedy += sum(a == e.target for a, e in zip(answers, chunk))
        results.append({"point": f"{length}x{nesting}", "length": length, "nesting": nesting, "snippets": snippets,
                        "teacher_forced_accuracy": right / chars, "greedy_exact": greedy / snippets})
    return results


def evaluate_l2e_run(run_dir: Path | str, points: Sequence[str], *, snippets: int = 1000, seed: int = 0,
                     batch: int = 100, device=None) -> dict:
    """Load a `diffvm train l2e` run's latest checkpoint and score it at `points` ("LxN" each)."""
    parsed = [parse_point(p) for p in points]
    run = load_run(run_dir)
    if not isinstance(run.task, L2ETask):
        raise ValueError(f"{run_dir} is a run of task {run.task.name!r}; `diffvm eval l2e` needs an l2e run")
    if device is not None:
        run.model.to(device)
    results = evaluate_l2e(run.model, run.task, parsed, snippets=snippets, seed=seed, batch=batch, device=device)
    c = run.task.config
    return {"run": str(run_dir), "update": run.update, "problem": c.problem, "strategy": c.strategy,
            "trained_on": f"{c.length}x{c.nesting}", "seed": seed, "held_out": f"hash split {TEST_HASH_SPLIT!r}",
            "points": results}


def l2e_eval_parser() -> argparse.ArgumentParser:
    """The parser of `diffvm eval l2e`."""
    parser = argparse.ArgumentParser(
        prog="diffvm eval l2e", description="Score an l2e run's last checkpoint on held-out snippets at each "
        "(length, nesting): teacher-forced per-character accuracy (the paper's metric) and greedy exact match.")
    parser.add_argument("run", type=Path, metavar="RUN", help="the run directory of `diffvm train l2e`")
    parser.add_argument("--points", nargs="+", default=["4x1", "4x2", "4x3"], metavar="LxN",
                        help="points LENGTHxNESTING (default: 4x1 4x2 4x3)")
    parser.add_argument("--snippets", type=int, default=1000, help="held-out snippets per point (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out snippets (default: 0)")
    parser.add_argument("--batch", type=int, default=100, help="snippets run at once (default: 100)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _table(report: dict) -> str:
    header = ["point", "snippets", "teacher-forced char accuracy", "greedy exact match"]
    rows = [header] + [[r["point"], str(r["snippets"]), f"{r['teacher_forced_accuracy']:.4f}",
                        f"{r['greedy_exact']:.4f}"] for r in report["points"]]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return (f"# l2e {report['problem']} ({report['strategy']} curriculum to {report['trained_on']}), {report['run']} "
            f"at update {report['update']}; held-out snippets ({report['held_out']}, seed {report['seed']})\n"
            + "\n".join(lines))


def run_l2e_eval(args: argparse.Namespace) -> int:
    """`diffvm eval l2e` for parsed arguments: print the table (or JSON), save it in the run directory."""
    report = evaluate_l2e_run(args.run, args.points, snippets=args.snippets, seed=args.seed, batch=args.batch)
    (Path(args.run) / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0
