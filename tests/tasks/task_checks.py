"""Checks every sequence task's tests run: seeded determinism and no global random state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from diffvm.tasks.base import SequenceTask

# Module-level samplers of the global generators: a task must call none of them.
GLOBAL_SAMPLERS = {
    np.random: ["random", "rand", "randn", "randint", "random_sample", "choice", "shuffle", "permutation",
                "binomial", "uniform", "integers"],
    torch: ["rand", "randn", "randint", "randperm", "bernoulli", "multinomial"],
    random: ["random", "randint", "randrange", "choice", "shuffle", "sample", "getrandbits", "uniform"],
}


def _draw_all(task: SequenceTask, seed: int) -> list:
    """A training batch and a batch of every split, each from a generator seeded `seed`."""
    return [task.sample(np.random.default_rng(seed), 4),
            *(task.sample_split(np.random.default_rng(seed), 4, s) for s in task.splits)]


def _equal(a: list, b: list) -> bool:
    return all(x.shape == y.shape and torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))


def check_same_seed_same_batch(task: SequenceTask) -> None:
    """The same seed gives the same batches; another seed another training batch."""
    assert _equal(_draw_all(task, 5), _draw_all(task, 5))
    a, c = task.sample(np.random.default_rng(5), 4), task.sample(np.random.default_rng(6), 4)
    assert not (a.inputs.shape == c.inputs.shape and torch.equal(a.inputs, c.inputs))


def check_no_global_random_state(task: SequenceTask, monkeypatch) -> None:
    """Batches are the same with every global sampler forbidden and the global seeds changed."""
    reference = _draw_all(task, 9)

    def forbidden(*args, **kwargs):
        raise AssertionError("a global random number generator was used")

    for module, names in GLOBAL_SAMPLERS.items():
        for attr in names:
            monkeypatch.setattr(module, attr, forbidden, raising=False)
    state = np.random.get_state()
    with torch.random.fork_rng():
        np.random.seed(1234)
        torch.manual_seed(1234)
        again = _draw_all(task, 9)
    np.random.set_state(state)
    assert _equal(reference, again)


def check_bad_requests_refused(task: SequenceTask, split: str) -> None:
    """A bad batch size, an unknown split and a level out of range are refused by name."""
    rng = np.random.default_rng(0)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=f"task '{task.name}': batch = "):
            task.sample(rng, bad)
        with pytest.raises(ValueError, match=f"task '{task.name}': batch = "):
            task.sample_split(rng, bad, split)
    with pytest.raises(ValueError, match="has no split 'no_such_split'"):
        task.sample_split(rng, 2, "no_such_split")
    for level in (-1, task.levels):
        with pytest.raises(ValueError, match=f"level {level} out of range"):
            task.sample(rng, 2, level)
