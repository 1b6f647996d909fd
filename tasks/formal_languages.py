"""Counting languages of Joulin & Mikolov 2015, "Inferring Algorithmic Patterns with Stack-Augmented
Recurrent Nets" (§4.1): read a stream of strings one character a step and predict the next one.

    anbn       aⁿbⁿ          anb2n      aⁿb²ⁿ
    anbncn     aⁿbⁿcⁿ        anbmcnm    aⁿbᵐcⁿ⁺ᵐ   (m drawn like n, independently)
    anbncndn   aⁿbⁿcⁿdⁿ

Encoding. The vocabulary is the language's letters, then the end-of-string symbol "." (so the
model can say where the last block ends); V = letters + 1 input channels and output classes
(output_kind "classes"). A sequence is K = strings_per_sequence strings, each read after a "."
(the stream starts with one) and each ended by a "."; the input at step t is the one-hot
character t of the stream, the target the one-hot character t + 1. For aⁿbⁿ with K = 2, n = 2
then n = 1 (T = 8):

    step t    0  1  2  3  4  5  6  7
    input     .  a  a  b  b  .  a  b
    target    a  a  b  b  .  a  b  .
    mask      1  0  0  1  1  1  0  1

Scoring: the deterministic part only, as in the paper. A step is scored (mask 1) when its target
follows from the characters read so far for every n, m ≥ 1 (the bounds min_n, max_n are not
used to predict). Which steps those are, by the step's input character:
  - "." (target "a": every string starts with an a, n ≥ 1): scored;
  - an a: not scored (the next character may be an a or a b: n is not known yet);
  - aⁿbⁿ, aⁿbⁿcⁿ, aⁿbⁿcⁿdⁿ, aⁿb²ⁿ: every b, c and d is scored; from the first b on, n is the
    number of a's read, so the rest of the string and its "." are determined;
  - aⁿbᵐcⁿ⁺ᵐ: the b's are not scored (after a b may come a b or a c: m is random); every c is
    scored: the first c shows m (the b's read), and the n + m c's in all and the "." follow.
So a step is scored when its input is "." or a letter of the string's *revealing* block (the b
block, or the c block of aⁿbᵐcⁿ⁺ᵐ) or a later one. `accuracy` is the fraction of scored steps
predicted right (Grefenstette et al.'s *fine* accuracy), `exact` the fraction of sequences with
every scored step right (their *coarse* accuracy; the paper's "correctly predicted sequence").

Lengths. Each string draws its own n (and m) uniform in a range, so the sequences of a batch
differ in length: each is padded at its end to the batch's longest with "." inputs and targets,
unscored (mask 0). (One length per batch, as `copy` does, is no option here: a string of these
languages is fixed by its n, so every sequence of a batch would be the same string.) The paper
trains on n < 20 and tests on n up to 60. Curriculum level k draws n uniform in
[min_n, min(min_n + k·curriculum_step, max_n)], the last level the full training range; split
"long" draws n uniform in [max_n + 1, eval_max_n]; split "n{N}" (N in `eval_n`) has n = N in
every string, and so every sequence of its batch is the same. m, where a language has one, is
drawn from the same range as n.

Everything random comes from the injected `numpy.random.Generator`: the same seed gives the same
batch, and no global random state is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from diffvm.tasks.algorithmic import _batch, _check_field, _parse_lengths
from diffvm.tasks.base import Batch, SequenceTask, register_task

__all__ = ["AnB2n", "AnBmCnm", "AnBn", "AnBnCn", "AnBnCnDn", "CountingLanguage", "LanguageConfig"]

END = "."  # the end-of-string symbol, the last class of the vocabulary
LONG_SPLIT = "long"  # n uniform in [max_n + 1, eval_max_n]: longer than any training string
EXACT_SPLIT_PREFIX = "n"  # split "n60": every string has n (and m) = 60


@dataclass
class LanguageConfig:
    """Options of the counting-language tasks (module docstring); the defaults are the paper's."""

    min_n: int = 1  # smallest n (and m) of a training string
    max_n: int = 19  # largest n (and m) of a training string (the paper trains on n < 20)
    eval_max_n: int = 60  # split "long" draws n (and m) uniform in [max_n + 1, this]
    eval_n: str = ""  # comma-separated counts N like "40,60", each a split "n{N}" whose strings all have n (and m) = N
    strings_per_sequence: int = 1  # K, the strings of a sequence, each with its own n (and m)
    curriculum_step: int = 4  # curriculum level k trains on n up to min_n + k·step

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "min_n", self.min_n, self.min_n >= 1, "≥ 1")
        _check_field(name, "max_n", self.max_n, self.max_n >= self.min_n, "≥ min_n")
        _check_field(name, "eval_max_n", self.eval_max_n, self.eval_max_n > self.max_n, "> max_n")
        self.parsed_eval_n()
        _check_field(name, "strings_per_sequence", self.strings_per_sequence, self.strings_per_sequence >= 1, "≥ 1")
        _check_field(name, "curriculum_step", self.curriculum_step, self.curriculum_step >= 1, "≥ 1")

    def parsed_eval_n(self) -> tuple[int, ...]:
        """The counts of `eval_n`, in the order given."""
        return _parse_lengths(type(self).__name__, "eval_n", self.eval_n)


class CountingLanguage(SequenceTask):
    """A counting language: see the module docstring for the layout and the scored steps.

    Inputs (B, T, I) and one-hot targets (B, T, O) with I = O = V = len(letters) + 1 (the letters,
    then "."), mask (B, T); T is the longest sequence of the batch, K strings and their "."s.

    A language is declared as data: string block i is `powers[i]` · (n, m) copies of
    `letters[i]`, and `revealed_by` is the revealing block (module docstring), whose first letter
    determines the rest of the string.
    """

    Config = LanguageConfig
    output_kind = "classes"
    # Stack-RNN: an LSTM-64 controller with two stacks of depth 200, no curriculum (docs/RESULTS.md).
    recipe = {"memory": "stackrnn", "memory_slots": 200, "hidden": 64, "heads": 2, "curriculum": False,
              "updates": 2000, "eval_every": 1000, "checkpoint_every": 500}
    letters: ClassVar[str]
    powers: ClassVar[tuple[tuple[int, int], ...]]
    revealed_by: ClassVar[int]

    def __init__(self, config: LanguageConfig | None = None):
        super().__init__(config)
        c = self.config
        self._split_n = {LONG_SPLIT: (c.max_n + 1, c.eval_max_n),
                         **{f"{EXACT_SPLIT_PREFIX}{n}": (n, n) for n in c.parsed_eval_n()}}

    @property
    def vocabulary(self) -> str:
        """The characters of the classes 0 … V − 1: the letters, then the end symbol."""
        return self.letters + END

    @property
    def input_size(self) -> int:
        return len(self.vocabulary)

    @property
    def output_size(self) -> int:
        return len(self.vocabulary)

    @property
    def levels(self) -> int:
        """One level per `curriculum_step` of growth in the largest n, the last one capped."""
        c = self.config
        return 1 + -(-(c.max_n - c.min_n) // c.curriculum_step)  # 1 + ceil(span / step)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self._split_n)

    def n_range(self, level: int | None = None) -> tuple[int, int]:
        """(smallest, largest) training n (and m) at curriculum `level` (None: the last level)."""
        level = self.check_level(level)
        c = self.config
        return c.min_n, min(c.min_n + level * c.curriculum_step, c.max_n)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """A batch whose strings each draw n (and m) uniform in `n_range(level)`."""
        self.check_batch(batch)
        return self._sequences(rng, batch, *self.n_range(level))

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """Split "train" is `sample` at the last level; "long" and "n{N}" as the module docstring says."""
        self.check_split(split)
        if split == "train":
            return self.sample(rng, batch)
        self.check_batch(batch)
        return self._sequences(rng, batch, *self._split_n[split])

    def _sequences(self, rng: np.random.Generator, batch: int, lo: int, hi: int) -> Batch:
        """`batch` sequences of K strings, each with n and m uniform in [lo, hi]."""
        strings, end = self.config.strings_per_sequence, len(self.letters)
        nm = rng.integers(lo, hi + 1, size=(batch, strings, 2))  # (B, K, 2) each string's n and m
        blocks = nm @ np.array(self.powers).T  # (B, K, blocks) letters per block
        # A string's segment of the stream: its leading "." (one step), then its blocks.
        counts = np.concatenate([np.ones_like(blocks[..., :1]), blocks], axis=-1)  # (B, K, 1 + blocks)
        symbols = np.tile([end, *range(len(self.letters))], strings)  # (K·(1 + blocks),) class of each run
        scored = np.tile([1, *(i >= self.revealed_by for i in range(len(self.letters)))], strings)
        lengths = counts.sum((1, 2))  # (B,) steps of each sequence
        steps = int(lengths.max())
        # The stream holds one character more than the steps, the target of the last step: the
        # last string's ".", or a padding "." (the initial fill).
        stream = np.full((batch, steps + 1), end)  # (B, T + 1) class indices
        mask = np.zeros((batch, steps), dtype=np.float32)  # (B, T); padding steps stay 0
        for i in range(batch):
            runs = counts[i].ravel()  # (K·(1 + blocks),)
            stream[i, :lengths[i]] = np.repeat(symbols, runs)
            mask[i, :lengths[i]] = np.repeat(scored, runs)
        one_hot = np.eye(len(self.vocabulary), dtype=np.float32)  # (V, V)
        return _batch(one_hot[stream[:, :-1]], one_hot[stream[:, 1:]], mask)  # (B, T, V) twice, (B, T)


@register_task
class AnBn(CountingLanguage):
    """aⁿbⁿ: the b's reveal n (scored from the first b)."""

    name = "anbn"
    letters = "ab"
    powers = ((1, 0), (1, 0))
    revealed_by = 1


@register_task
class AnBnCn(CountingLanguage):
    """aⁿbⁿcⁿ: the b's reveal n (scored from the first b)."""

    name = "anbncn"
    letters = "abc"
    powers = ((1, 0), (1, 0), (1, 0))
    revealed_by = 1


@register_task
class AnBnCnDn(CountingLanguage):
    """aⁿbⁿcⁿdⁿ: the b's reveal n (scored from the first b)."""

    name = "anbncndn"
    letters = "abcd"
    powers = ((1, 0), (1, 0), (1, 0), (1, 0))
    revealed_by = 1


@register_task
class AnB2n(CountingLanguage):
    """aⁿb²ⁿ: the b's reveal n (scored from the first b)."""

    name = "anb2n"
    letters = "ab"
    powers = ((1, 0), (2, 0))
    revealed_by = 1


@register_task
class AnBmCnm(CountingLanguage):
    """aⁿbᵐcⁿ⁺ᵐ: m is random too, so only the c's reveal the count n + m (scored from the first c)."""

    name = "anbmcnm"
    letters = "abc"
    powers = ((1, 0), (0, 1), (1, 1))
    revealed_by = 2
