"""Three transduction tasks of Grefenstette et al. 2015, "Learning to Transduce with Unbounded Memory".

A source of L symbols, each uniform over a vocabulary of V symbols, is read one symbol a step;
after a delimiter step the model writes the target, one symbol a step, during L blank steps. The
three tasks differ only in the target, a fixed reordering of the source (`answer_order`):

    symbol_copy   s_1 s_2 … s_L            → s_1 s_2 … s_L            (first in, first out: a queue's order)
    reversal      s_1 s_2 … s_L            → s_L … s_2 s_1            (last in, first out: a stack's order)
    bigram_flip   s_1 s_2 s_3 s_4 … s_L    → s_2 s_1 s_4 s_3 …        (L even)

Encoding. I = V + 1 input channels (a one-hot symbol, then the delimiter flag) and O = V output
classes (logits (B, T, O), scored with a softmax: output_kind "classes"); T = 2L + 1:

    step t        0 … L−1              L               L+1 … 2L
    inputs[:V]    one-hot s_1 … s_L    0               0
    inputs[V]     0                    1 (delimiter)   0
    targets       class 0              class 0         one-hot target symbols 1 … L
    mask          0                    0               1

Targets are one-hot at every step; the steps before the answer hold class 0 only as a
placeholder, and their mask is 0, so they are never scored (no extra "nothing" class is learned).
The "classes" metrics of `SequenceTask` are the paper's two figures: `accuracy` is its *fine*
accuracy (the fraction of target symbols right), `exact` its *coarse* accuracy (the fraction of
targets right in full).

Lengths. One L is drawn per batch, so a batch needs no padding. The paper trains on L uniform in
[8, 64] and tests on L uniform in [65, 128]: split "train" draws L uniform in [min_length,
max_length], split "long" L uniform in [max_length + 1, eval_max_length]. Curriculum level k draws
L uniform in [min_length, min(min_length + k·curriculum_step, max_length)], as `copy` does; the
last level is the full training range. bigram_flip draws even lengths only, uniform over the even
numbers of these ranges, and so needs min_length, max_length and curriculum_step even.

Everything random comes from the injected `numpy.random.Generator`: the same seed gives the same
batch, and no global random state is read.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from diffvm.tasks.algorithmic import _batch, _check_field
from diffvm.tasks.base import Batch, GrowingTask, register_task

__all__ = ["BigramFlip", "Reversal", "SymbolCopy", "Transduction", "TransductionConfig"]

def transduction_recipe(memory: str) -> dict:
    """The paper's setup with a small controller and no curriculum: trained on the full range of
    lengths from the start, an LSTM-64 cannot hold the source itself and must use the device. With
    the curriculum it learns the short sources of level 0 without the device and stays there
    (docs/RESULTS.md)."""
    return {"memory": memory, "memory_slots": 260, "hidden": 64, "curriculum": False, "updates": 5000,
            "eval_every": 2500, "checkpoint_every": 500}


LONG_SPLIT = "long"  # the paper's test split: sources longer than any seen in training


@dataclass
class TransductionConfig:
    """Options of the transduction tasks (module docstring); the defaults are the paper's."""

    vocabulary: int = 128  # V, the symbols a source is drawn from (each uniformly)
    min_length: int = 8  # shortest training source (symbols)
    max_length: int = 64  # longest training source (symbols); one length is drawn per batch
    eval_max_length: int = 128  # split "long" draws sources of length uniform in [max_length + 1, this]
    curriculum_step: int = 8  # curriculum level k trains on lengths up to min_length + k·step

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "vocabulary", self.vocabulary, self.vocabulary >= 1, "≥ 1")
        _check_field(name, "min_length", self.min_length, self.min_length >= 1, "≥ 1")
        _check_field(name, "max_length", self.max_length, self.max_length >= self.min_length, "≥ min_length")
        _check_field(name, "eval_max_length", self.eval_max_length, self.eval_max_length > self.max_length,
                     "> max_length")
        _check_field(name, "curriculum_step", self.curriculum_step, self.curriculum_step >= 1, "≥ 1")


class Transduction(GrowingTask):
    """A transduction task: see the module docstring for the layout of a batch.

    Inputs (B, T, I) with I = vocabulary + 1, one-hot targets (B, T, O) with O = vocabulary,
    mask (B, T), where T = 2L + 1 for the batch's source length L. Subclasses set `name` and
    implement `answer_order`; `length_multiple` > 1 restricts L to its multiples.
    """

    Config = TransductionConfig
    output_kind = "classes"
    length_multiple: ClassVar[int] = 1  # every source length L is a multiple of this

    def __init__(self, config: TransductionConfig | None = None):
        super().__init__(config)
        c, m = self.config, self.length_multiple
        expected = f"a multiple of {m} for task {self.name!r}"
        # min_length, and the step, multiples of m: every level's range starts at a multiple and
        # reaches a new one, so no level is empty nor repeats the one before it.
        for field in ("min_length", "max_length", "curriculum_step"):
            _check_field(type(c).__name__, field, getattr(c, field), getattr(c, field) % m == 0, expected)
        _check_field(type(c).__name__, "eval_max_length", c.eval_max_length, c.eval_max_length >= c.max_length + m,
                     f"≥ max_length + {m} for task {self.name!r}, whose lengths are multiples of {m}")

    @abstractmethod
    def answer_order(self, length: int) -> np.ndarray:
        """(L,) source positions: the answer's t-th symbol is the source's `order[t]`-th."""

    @property
    def input_size(self) -> int:
        return self.config.vocabulary + 1  # the one-hot symbol, then the delimiter flag

    @property
    def output_size(self) -> int:
        return self.config.vocabulary

    def knob_bounds(self) -> tuple[int, int, int]:
        """The knob is the source length L, drawn once per batch."""
        c = self.config
        return c.min_length, c.max_length, c.curriculum_step

    def split_ranges(self) -> dict[str, tuple[int, int]]:
        """"long": L uniform in [max_length + 1, eval_max_length]."""
        return {LONG_SPLIT: (self.config.max_length + 1, self.config.eval_max_length)}

    def draw(self, rng: np.random.Generator, low: int, high: int) -> int:
        """A length uniform over the multiples of `length_multiple` in [low, high]."""
        m = self.length_multiple
        return m * int(rng.integers(-(-low // m), high // m + 1))  # multiples ceil(low / m)·m … floor(high / m)·m

    def episodes(self, rng: np.random.Generator, batch: int, length: int) -> Batch:
        """`batch` episodes of sources `length` symbols long (module docstring's table)."""
        vocabulary, steps = self.config.vocabulary, 2 * length + 1
        one_hot = np.eye(vocabulary, dtype=np.float32)  # (V, V) row s: symbol s
        source = rng.integers(0, vocabulary, size=(batch, length))  # (B, L) symbols
        inputs = np.zeros((batch, steps, vocabulary + 1), dtype=np.float32)  # (B, T, I)
        inputs[:, :length, :vocabulary] = one_hot[source]  # (B, L, V)
        inputs[:, length, vocabulary] = 1  # the delimiter flag
        targets = np.zeros((batch, steps, vocabulary), dtype=np.float32)  # (B, T, O)
        targets[:, :length + 1, 0] = 1  # unscored placeholder: class 0
        targets[:, length + 1:] = one_hot[source[:, self.answer_order(length)]]  # (B, L, V)
        mask = np.zeros((batch, steps), dtype=np.float32)  # (B, T)
        mask[:, length + 1:] = 1
        return _batch(inputs, targets, mask)


@register_task
class SymbolCopy(Transduction):
    """Sequence copying: the target is the source (module docstring)."""

    name = "symbol_copy"
    recipe = transduction_recipe("queue")

    def answer_order(self, length: int) -> np.ndarray:
        return np.arange(length)


@register_task
class Reversal(Transduction):
    """Sequence reversal: the target is the source backwards (module docstring)."""

    name = "reversal"
    recipe = transduction_recipe("stack")

    def answer_order(self, length: int) -> np.ndarray:
        return np.arange(length)[::-1]


@register_task
class BigramFlip(Transduction):
    """Bigram flipping: each pair of the (even-length) source swapped (module docstring)."""

    name = "bigram_flip"
    recipe = transduction_recipe("deque")
    length_multiple = 2  # the source is a sequence of pairs

    def answer_order(self, length: int) -> np.ndarray:
        return np.arange(length).reshape(-1, 2)[:, ::-1].reshape(-1)  # (L/2, 2) pairs, each swapped
