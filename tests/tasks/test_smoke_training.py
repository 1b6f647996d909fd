"""Every registered task trains for a few seconds: nothing crashes and the loss goes down.

A task registered without an entry here fails `test_every_registered_task_has_a_smoke_run`."""

import json
import math

import pytest

from diffvm.controllers.model import ModelConfig
from diffvm.controllers.trainer import TrainConfig, run_config, train
from diffvm.tasks import (
    TASKS,
    AdditionConfig,
    AssociativeRecallConfig,
    CopyConfig,
    GraphTaskConfig,
    L2EConfig,
    LanguageConfig,
    ParityConfig,
    PrioritySortConfig,
    RepeatCopyConfig,
    TransductionConfig,
)

NTM = ModelConfig(hidden=16, memory="ntm", memory_slots=8, memory_width=4)
TRANSDUCTION = TransductionConfig(vocabulary=4, min_length=4, max_length=4, eval_max_length=6, curriculum_step=2)
LANGUAGE = LanguageConfig(max_n=3, eval_max_n=4, curriculum_step=1)
GRAPH = GraphTaskConfig(min_nodes=3, max_nodes=3, min_steps=1, max_steps=1, lessons=1, planning_steps=0,
                        eval_max_nodes=4)
STACK_RNN = ModelConfig(hidden=16, memory="stackrnn", heads=2, memory_slots=6, memory_width=1)

# task -> (task config, model config): tiny, so that 60 updates take a few seconds; one sequence
# length where a task draws one per batch, so that the loss of one batch is comparable to another's
SMOKE = {
    "copy": (CopyConfig(width=3, min_length=3, max_length=3, eval_lengths="5"), NTM),
    "repeat_copy": (RepeatCopyConfig(width=2, max_length=2, max_repeats=2, eval_lengths="3", eval_repeats="3"), NTM),
    "associative_recall": (AssociativeRecallConfig(width=2, item_length=1, max_items=3, eval_items="4"), NTM),
    "priority_sort": (PrioritySortConfig(width=2, count=4, keep=3), NTM),
    "parity": (ParityConfig(size=4, max_ones=4), ModelConfig(hidden=16)),
    "addition": (AdditionConfig(max_numbers=3, max_digits=1, eval_numbers="4-4"),
                 ModelConfig(hidden=16, halting="act", max_ponder=3)),
    "symbol_copy": (TRANSDUCTION, ModelConfig(hidden=16, memory="queue", memory_slots=16, memory_width=4)),
    "reversal": (TRANSDUCTION, ModelConfig(hidden=16, memory="stack", memory_slots=16, memory_width=4)),
    "bigram_flip": (TRANSDUCTION, ModelConfig(hidden=16, memory="deque", memory_slots=16, memory_width=4)),
    **{name: (LANGUAGE, STACK_RNN) for name in ("anbn", "anbncn", "anbncndn", "anb2n", "anbmcnm")},
    "graph_traversal": (GRAPH, ModelConfig(hidden=32, memory="dnc", memory_slots=8, memory_width=8)),
    "graph_shortest_path": (GRAPH, ModelConfig(hidden=32)),
    "l2e": (L2EConfig(length=1, nesting=1), ModelConfig(hidden=16, layers=2)),
}
UPDATES = 60


def test_every_registered_task_has_a_smoke_run():
    assert sorted(SMOKE) == sorted(TASKS)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_a_tiny_model_trains_and_the_loss_goes_down(name, tmp_path):
    task_config, model = SMOKE[name]
    steps = TrainConfig(updates=UPDATES, batch=8, lr=1e-2, curriculum=False, eval_batch=4, log_every=10,
                        eval_every=UPDATES, checkpoint_every=UPDATES, device="cpu")
    train(run_config(name, task_config, model, steps), tmp_path / name, quiet=True)
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    losses = [r["task_loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == UPDATES // 10 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    evals = [r for r in records if r["kind"] == "eval"]
    assert {r["split"] for r in evals} == set(TASKS[name](task_config).splits)
    assert all(math.isfinite(v) for r in evals for mode in ("soft", "hard") for v in r[mode].values())
