"""Train a Neural Programmer on synthetic table QA; print soft and discretised held-out accuracy.

    OMP_NUM_THREADS=1 python scripts/train_neural_programmer.py --families single --updates 2000 --seed 0

Held-out questions come from a generator seeded apart from training: tables of the training size
(`--rows`) and larger ones (`--test-rows`). `--out DIR` saves the config, records and weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from diffvm.controllers.neural_programmer import (
    NeuralProgrammerConfig,
    evaluate_np,
    save_run,
    train_neural_programmer,
)
from diffvm.tasks.table_qa import COMPOSITIONAL_FAMILIES, SINGLE_FAMILIES, TableQA

FAMILY_SETS = {"single": SINGLE_FAMILIES, "compositional": COMPOSITIONAL_FAMILIES,
               "all": SINGLE_FAMILIES + COMPOSITIONAL_FAMILIES}
# Seed offset of the final evaluation's generator: apart from every training and checking stream.
EVAL_SEED_OFFSET = 10_000


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = NeuralProgrammerConfig()
    for f in dataclasses.fields(NeuralProgrammerConfig):
        if f.name in ("ops", "families", "extra"):
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                            default=getattr(defaults, f.name))
    parser.add_argument("--families", choices=sorted(FAMILY_SETS), default="single")
    parser.add_argument("--test-rows", type=int, default=16, help="rows of the larger held-out tables")
    parser.add_argument("--test-questions", type=int, default=1000)
    parser.add_argument("--out", default=None, help="folder for config.json, records.jsonl, model.pt")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    fields = {f.name for f in dataclasses.fields(NeuralProgrammerConfig)} - {"ops", "families", "extra"}
    config = NeuralProgrammerConfig(**{k: getattr(args, k) for k in fields}, families=FAMILY_SETS[args.families])
    start = time.perf_counter()
    model, records = train_neural_programmer(config, progress=not args.quiet)
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(config.seed + EVAL_SEED_OFFSET)
    results = {"config": dataclasses.asdict(config) | {"families": args.families}, "train_seconds": seconds}
    for label, rows in (("heldout", config.rows), ("larger_tables", args.test_rows)):
        for fam_label, fams in (("single", SINGLE_FAMILIES), ("compositional", COMPOSITIONAL_FAMILIES)):
            if args.families != "all" and fam_label != args.families:
                continue
            questions = TableQA(config.task_config(rows=rows, families=fams)).sample(rng, args.test_questions)
            results[f"{label}_{fam_label}"] = acc = evaluate_np(model, questions)
            print(f"{label:14s} rows={rows:3d} {fam_label:13s} soft {acc['soft']:.3f}  "
                  f"discretised {acc['discretised']:.3f}  ({acc['questions']} questions)")
            for fam, a in acc["discretised_per_family"].items():
                print(f"    {fam:28s} {a:.3f}")
    print(f"trained {config.updates} updates in {seconds:.0f} s")
    if args.out:
        save_run(model, records, args.out)
        with open(f"{args.out}/results.json", "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
