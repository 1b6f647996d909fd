"""Success rate of each induction strategy, alone and combined, on every function of the family.

A run succeeds when its discretised program is ≥ 99 % exact on held-out inputs 10x larger than
any seen in training (the `diffvm demo` criterion). Writes one JSON line per run and prints the
markdown table that docs/RESULTS.md quotes.

    OMP_NUM_THREADS=1 python scripts/induction_sweep.py --seeds 10 --jobs 2 --out runs/sweep.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from multiprocessing import Pool

import numpy as np
import torch

from diffvm.controllers import InductionConfig, evaluate_program, induce
from diffvm.tasks import FAMILY, ArithmeticTask

# name -> the InductionConfig fields that differ from a plain single-seed run of its strategy
STRATEGIES: dict[str, dict] = {
    "soft": dict(strategy="soft", entropy=0.0),
    "soft + annealing": dict(strategy="soft", entropy=0.0, temperature_end=0.05),
    "soft + entropy": dict(strategy="soft", entropy=0.05),
    "soft + gradient noise": dict(strategy="soft", entropy=0.0, gradient_noise=0.01),
    "soft + gumbel ST": dict(strategy="soft", entropy=0.0, gumbel=True),
    "soft + depth curriculum": dict(strategy="soft", entropy=0.0, depth_curriculum=True),
    "soft, all combined + 4 restarts": dict(strategy="soft", entropy=0.05, temperature_end=0.05,
                                            gradient_noise=0.01, gumbel=True, restarts=4),
    "reinforce": dict(strategy="reinforce", entropy=0.0),
    "reinforce + entropy": dict(strategy="reinforce", entropy=0.01),
    "reinforce + annealing": dict(strategy="reinforce", entropy=0.0, temperature_end=0.3),
    "reinforce + entropy + 4 restarts (default)": dict(strategy="reinforce", entropy=0.01, restarts=4),
}


def one_run(job: tuple[str, str, int]) -> dict:
    strategy, function, seed = job
    torch.set_num_threads(1)
    overrides = {"restarts": 1, **STRATEGIES[strategy]}
    cfg = InductionConfig(seed=seed, **overrides)
    task = ArithmeticTask(function)
    result = induce(task, cfg)
    inputs, target = task.sample(np.random.default_rng([seed, 1]), 1000, heldout=True)
    accuracy = evaluate_program(result.program, task, inputs, target)
    return {"strategy": strategy, "function": function, "seed": seed, "heldout_accuracy": accuracy,
            "success": accuracy >= 0.99, "updates": result.total_updates, "seconds": round(result.seconds, 2),
            "program": "; ".join(map(str, result.program.steps)), "config": dataclasses.asdict(cfg)}


def table(rows: list[dict]) -> str:
    functions = list(FAMILY)
    lines = ["| strategy | " + " | ".join(f"`{f}`" for f in functions) + " | mean s/run |",
             "|---|" + "---|" * (len(functions) + 1)]
    for strategy in STRATEGIES:
        mine = [r for r in rows if r["strategy"] == strategy]
        if not mine:
            continue
        cells = []
        for f in functions:
            runs = [r for r in mine if r["function"] == f]
            cells.append(f"{sum(r['success'] for r in runs)}/{len(runs)}")
        secs = sum(r["seconds"] for r in mine) / len(mine)
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {secs:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--out", default="runs/induction_sweep.jsonl")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    jobs = [(s, f, seed) for s in args.strategies for f in FAMILY for seed in range(args.seeds)]
    print(f"{len(jobs)} runs, {args.jobs} processes, torch threads per process: 1")
    start = time.perf_counter()
    rows = []
    with Pool(args.jobs) as pool, open(args.out, "w") as out:
        for row in pool.imap_unordered(one_run, jobs):
            rows.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
    print(table(rows))
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
