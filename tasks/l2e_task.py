"""Learning to Execute as a sequence task (`diffvm train l2e`): any controller and memory of the
toolkit reads a program one character a step, then writes its output one character a step.

Encoding of one example, program text P (ending in "@") and target A (ending in "."), with the
42 characters of `VOCABULARY`: I = 42 + 1 input channels (a one-hot character, then the *phase*
bit, 1 while answering) and O = 42 output classes (output_kind "classes"); T = |P| + |A| steps:

    step t        0 … |P|−1          |P|            |P|+1 … |P|+|A|−1      |P|+|A| … T_batch−1
    inputs[:42]   one-hot P[t]        0 (GO)         one-hot A[t−|P|−1]     0 (padding)
    inputs[42]    0                   1              1                      0
    targets       class 0             one-hot A[0]   one-hot A[t−|P|]       class 0
    mask          0                   1              1                      0

The answer is teacher-forced, as the paper trains and scores it: at answer step j the input is the
*correct* previous target character A[j−1]; the first answer step sees the phase bit alone (the GO
symbol). The targets before the answer and on padding hold class 0 only as a placeholder; their
mask is 0, so they are never scored. A batch is padded at the end to its longest example: a model
reads left to right, so padding after an example's answer changes none of its scored outputs.
`SequenceTask.metrics` are the paper's metric and exact match: `accuracy` is the per-character
accuracy of the teacher-forced answer, `exact` the fraction of answers right in every character
(teacher-forced; `diffvm eval l2e` adds greedy decoding, the model feeding back its own output).

Curriculum (Zaremba & Sutskever 2014, `diffvm.tasks.l2e.Curriculum`): level k is the stage (l, n)
= (k mod a + 1, ⌊k / a⌋ + 1) of the growing curricula toward the target (a, b) = (length,
nesting): one more digit a level, then one more nesting from one digit, a·b levels in all for
"naive" and "combined". "baseline" and "mix" do not grow (mix draws every example uniformly up to
the target at every stage): one level. The trainer advances a level when the training batches'
exact match reaches its threshold; the authors advanced on validation accuracy. Under "combined" a
fifth of the examples come from mix, up to the target, so a model that answers every example of
stage (l, n) and none harder scores about 0.8 + 0.2·(l/a)(n/b) exact (0.82 at (1, 1) toward
(4, 3)): below the trainer's default threshold 0.9, the curriculum would stay at level 0. The
task's recipe (what `diffvm train l2e` uses unless told otherwise) sets the threshold below that
bound, 0.75.

Splits: "train" is the training distribution at the last level; each evaluation point "LxN" is
programs of exactly L digits and nesting N (for addition and memorisation, N is 1). Training draws
only examples of the hash split "train" of `diffvm.tasks.l2e.split_of`, evaluation splits those of
"validation", and `diffvm eval l2e` those of "test": no program is both trained on and scored.

Everything random comes from the injected `numpy.random.Generator`: the same seed gives the same
batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diffvm.tasks.algorithmic import _batch, _check_field
from diffvm.tasks.base import Batch, SequenceTask, register_task
from diffvm.tasks.l2e import (
    MAX_LENGTH,
    MAX_NESTING,
    STRATEGIES,
    TASKS,
    VOCABULARY,
    Curriculum,
    Example,
    encode,
    sample_examples,
)

__all__ = ["INPUT_SIZE", "L2EConfig", "L2ETask", "PHASE", "encode_examples", "parse_point"]

PHASE = len(VOCABULARY)  # the input channel that is 1 on answer steps (alone: the GO symbol)
INPUT_SIZE = len(VOCABULARY) + 1  # I: one-hot character, then the phase bit
TRAINING_HASH_SPLIT = "train"  # the hash split (`split_of`) training examples come from
VALIDATION_HASH_SPLIT = "validation"  # the hash split of the evaluation splits during training
_POINT = re.compile(r"^(\d+)x(\d+)$")


def parse_point(text: str) -> tuple[int, int]:
    """(length, nesting) of an evaluation point written "LxN", e.g. "4x2"."""
    match = _POINT.match(text.strip())
    if match is None:
        raise ValueError(f"evaluation point {text!r}: expected LENGTHxNESTING, e.g. 4x2")
    length, nesting = int(match.group(1)), int(match.group(2))
    if not (1 <= length <= MAX_LENGTH and 1 <= nesting <= MAX_NESTING):
        raise ValueError(f"evaluation point {text!r}: length must be in [1, {MAX_LENGTH}] and nesting in "
                         f"[1, {MAX_NESTING}]")
    return length, nesting


@dataclass
class L2EConfig:
    """Options of the Learning-to-Execute task (module docstring); the defaults are the paper's smallest setting."""

    problem: str = "programs"  # "programs", "addition" (two numbers of `length` digits) or "memorisation"
    length: int = 4  # a: digits of the constants at the target difficulty
    nesting: int = 1  # b: operations chained at the target difficulty (1 for addition and memorisation)
    strategy: str = "combined"  # curriculum: "baseline", "naive", "mix" or "combined" (the paper's best)
    eval_points: str = ""  # evaluation splits "LxN,…" (e.g. "4x1,4x2,4x3"); empty: length a at each nesting ≤ b

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "problem", self.problem, self.problem in TASKS, f"one of {', '.join(TASKS)}")
        _check_field(name, "length", self.length, isinstance(self.length, int) and 1 <= self.length <= MAX_LENGTH,
                     f"an int in [1, {MAX_LENGTH}]")
        top = MAX_NESTING if self.problem == "programs" else 1
        _check_field(name, "nesting", self.nesting, isinstance(self.nesting, int) and 1 <= self.nesting <= top,
                     f"an int in [1, {top}]" + ("" if top > 1 else f" ({self.problem} has no nesting)"))
        _check_field(name, "strategy", self.strategy, self.strategy in STRATEGIES, f"one of {', '.join(STRATEGIES)}")
        try:
            points = self.points()
        except ValueError as e:
            raise ValueError(f"{name}.eval_points = {self.eval_points!r}: {e}") from None
        _check_field(name, "eval_points", self.eval_points, len(set(points)) == len(points), "points without repeats")
        _check_field(name, "eval_points", self.eval_points, all(n <= top for _, n in points),
                     f"points of nesting ≤ {top} for {self.problem}")

    def points(self) -> list[tuple[int, int]]:
        """The evaluation points (length, nesting), in order."""
        if not self.eval_points.strip():
            return [(self.length, n) for n in range(1, self.nesting + 1)]
        return [parse_point(p) for p in self.eval_points.split(",")]


def encode_examples(examples: Sequence[Example]) -> Batch:
    """The batch of `examples` (module docstring's table), padded at the end to the longest.

    Returns:
        inputs (B, T, I), one-hot targets (B, T, O) and mask (B, T), with I = 43, O = 42 and
        T = max |P| + |A|.
    """
    if not examples:
        raise ValueError("encode_examples needs at least one example")
    classes = len(VOCABULARY)
    steps = max(len(e.text) + len(e.target) for e in examples)
    inputs = np.zeros((len(examples), steps, INPUT_SIZE), dtype=np.float32)  # (B, T, I)
    targets = np.zeros((len(examples), steps, classes), dtype=np.float32)  # (B, T, O)
    targets[:, :, 0] = 1  # unscored placeholder: class 0
    mask = np.zeros((len(examples), steps), dtype=np.float32)  # (B, T)
    for b, example in enumerate(examples):
        program, answer = encode(example.text), encode(example.target)
        p, a = len(program), len(answer)
        inputs[b, np.arange(p), program] = 1
        inputs[b, p + 1 + np.arange(a - 1), answer[:-1]] = 1  # teacher forcing: the previous target character
        inputs[b, p:p + a, PHASE] = 1
        targets[b, p:p + a] = np.eye(classes, dtype=np.float32)[answer]  # (A, O)
        mask[b, p:p + a] = 1
    return _batch(inputs, targets, mask)


@register_task
class L2ETask(SequenceTask):
    """Learning to Execute: programs (or addition, memorisation) in, their output out (module docstring)."""

    name = "l2e"
    # The paper's two-layer LSTM (400 units there) at 128 units and its batch of 100, its combined
    # curriculum up to nesting 3, gradients clipped at 5; a stage ends at 75 % exact (module
    # docstring). An hour of training, whatever the updates it reaches (docs/RESULTS.md: 10 865 on
    # the 2-core machine shared with two other runs); `--updates N --max-seconds 0` fixes the length.
    recipe = {"nesting": 3, "layers": 2, "hidden": 128, "batch": 100, "clip_grad": 5.0, "curriculum_threshold": 0.75,
              "updates": 100000, "max_seconds": 3600.0, "eval_every": 1000, "checkpoint_every": 1000}
    Config = L2EConfig
    output_kind = "classes"

    @property
    def input_size(self) -> int:
        return INPUT_SIZE

    @property
    def output_size(self) -> int:
        return len(VOCABULARY)

    @property
    def _target_nesting(self) -> int:
        return self.config.nesting if self.config.problem == "programs" else 1

    @property
    def levels(self) -> int:
        """a·b stages for the growing curricula (naive, combined); 1 for baseline and mix."""
        if self.config.strategy in ("baseline", "mix"):
            return 1
        return self.config.length * self._target_nesting

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *(f"{length}x{nesting}" for length, nesting in self.config.points()))

    def curriculum(self, level: int | None = None) -> Curriculum:
        """The Learning-to-Execute curriculum at `level` (None: the last): stage (k mod a + 1, ⌊k / a⌋ + 1)."""
        level = self.check_level(level)
        c = self.config
        stage = (c.length, self._target_nesting) if self.levels == 1 else (level % c.length + 1, level // c.length + 1)
        return Curriculum(c.strategy, c.length, self._target_nesting, *stage)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """A training batch at curriculum `level`: examples of the hash split "train" only."""
        self.check_batch(batch)
        curriculum = self.curriculum(level)
        return encode_examples(sample_examples(rng, batch, curriculum, task=self.config.problem,
                                               split=TRAINING_HASH_SPLIT))

    def point_examples(self, rng: np.random.Generator, count: int, length: int, nesting: int,
                       hash_split: str) -> list[Example]:
        """`count` examples at exactly (length, nesting), all of hash split `hash_split` (`split_of`)."""
        curriculum = Curriculum("baseline", length, nesting if self.config.problem == "programs" else 1)
        return sample_examples(rng, count, curriculum, task=self.config.problem, split=hash_split)

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """"train": `sample` at the last level; "LxN": examples of exactly that point (hash split "validation")."""
        self.check_split(split)
        if split == "train":
            return self.sample(rng, batch)
        self.check_batch(batch)
        return encode_examples(self.point_examples(rng, batch, *parse_point(split), VALIDATION_HASH_SPLIT))
