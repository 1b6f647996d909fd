"""Algorithmic sequence tasks: NTM `copy`, ACT `parity` and ACT `addition`.

**copy** (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", §4.1). An episode shows L
random binary vectors of `width` bits (each bit a fair coin), then one delimiter step; during the
L blank steps that follow the model must output the L vectors in order. With I = width + 1 input
channels (the last one the delimiter flag) and O = width output channels, T = 2L + 1:

    step t             0 … L−1        L             L+1 … 2L
    inputs[:width]     x_0 … x_{L−1}  0             0
    inputs[width]      0              1 (delimiter) 0
    targets            0              0             x_0 … x_{L−1}
    mask               0              0             1

One length L is drawn per batch, as common NTM implementations do, so a batch needs no padding. Curriculum
level k draws L uniform in [min_length, min(min_length + k·curriculum_step, max_length)]; the
last level is the full training range. Split "length{L}" has every sequence exactly L long.

**parity** (Graves 2016, "Adaptive Computation Time for Recurrent Neural Networks", §3.1). One
input step: a vector of `size` elements, k of them (k uniform in [min_ones, max_ones], at
uniformly random positions) set to +1 or −1 by a fair coin each, the rest 0. The single target
bit is 1 when the number of +1 entries is odd. PonderNet (Banino et al. 2021) trains on
k ∈ [1, 48] of 96 and tests on k ∈ [49, 96]: `ParityConfig(size=96, max_ones=48,
eval_ones="49-96")`, whose extra split is "ones49-96".

**addition** (Graves 2016, §3.3). A sequence of K numbers (K uniform in [min_numbers,
max_numbers] per sequence), one per step, each of D digits (D uniform in [1, max_digits] per
number, every digit uniform in 0 … 9, so a leading 0 may occur as in the paper). Input step t
is the concatenation of D one-hot digit vectors, most significant first, zero-padded to
I = 10·max_digits. The target at every step but the first is the cumulative sum of the numbers
so far, as G = `sum_digits` simultaneous 11-way classifications: the sum's digits, most
significant first, then class 10 (END, "the number is complete") in the unused positions, e.g.
112 → 1 1 2 END END END (output_kind "classes", `class_groups` G, O = 11·G). There is no target
at the first step (the paper's "no sums have yet been calculated"), so a sequence has at least
two numbers by default. Sequences shorter than the batch's longest are padded with zero inputs
and mask 0. `accuracy` is per digit, `exact` the paper's sequence accuracy (1 − its sequence
error rate). Curriculum level k allows up to k + 1 digits per number; split "numbers{lo}-{hi}"
has K uniform in [lo, hi] (more numbers than in training: longer sums to carry).

Everything random comes from the injected `numpy.random.Generator`: the same seed gives the same
batch, and no global random state is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffvm.tasks.base import Batch, GrowingTask, SequenceTask, register_task

__all__ = ["Addition", "AdditionConfig", "Copy", "CopyConfig", "Parity", "ParityConfig"]

# The NTM paper's model and optimiser for its tasks: an LSTM-100 controller, a 128 x 20 memory, one
# head, RMSProp 1e-4 with momentum 0.9, no curriculum (with Adam 1e-3 and the curriculum, copy
# stalled at lengths ≤ 13 like an LSTM; docs/RESULTS.md). Copy learns in 2000 updates; the other
# tasks get 10 000, not yet measured.
NTM_RECIPE = {"memory": "ntm", "memory_slots": 128, "memory_width": 20, "hidden": 100, "optimiser": "rmsprop",
              "lr": 1e-4, "curriculum": False, "updates": 10000, "eval_every": 2000, "checkpoint_every": 500}
COPY_SPLIT_PREFIX = "length"  # split "length40": every sequence 40 vectors long
PARITY_SPLIT_PREFIX = "ones"  # split "ones49-96": k uniform in [49, 96]
ADDITION_SPLIT_PREFIX = "numbers"  # split "numbers6-9": 6 to 9 numbers per sequence
DIGITS = 10  # one-hot classes of a decimal digit
END = DIGITS  # addition's 11th output class: no digit here, the sum is complete
ADDITION_MAX_NUMBERS = 99  # the most numbers a split may put in a sequence: keeps G, the sum's digits, sane


def _parse_lengths(config: str, field: str, text: str) -> tuple[int, ...]:
    """The positive integers of a comma-separated field ("20,40"); "" gives none."""
    expected = "comma-separated distinct integers ≥ 1, like '20,40'"
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if not all(p.isdigit() and int(p) >= 1 for p in parts) or len(set(map(int, parts))) != len(parts):
        raise ValueError(f"{config}.{field} = {text!r}: must be {expected}")
    return tuple(int(p) for p in parts)


def _parse_ranges(config: str, field: str, text: str, size: int) -> tuple[tuple[int, int], ...]:
    """The (lo, hi) ranges of a comma-separated field ("49-96,1-8"), each within [1, size]."""
    expected = f"comma-separated distinct ranges lo-hi with 1 ≤ lo ≤ hi ≤ size = {size}, like '49-96'"
    ranges = []
    for part in (p.strip() for p in text.split(",")) if text.strip() else ():
        lo, sep, hi = part.partition("-")
        if not (sep and lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi) <= size):
            raise ValueError(f"{config}.{field} = {text!r}: {part!r} is not a range; must be {expected}")
        ranges.append((int(lo), int(hi)))
    if len(set(ranges)) != len(ranges):
        raise ValueError(f"{config}.{field} = {text!r}: a range is repeated; must be {expected}")
    return tuple(ranges)


def _check_field(config: str, field: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{config}.{field} = {value!r}: must be {expected}")


def _batch(inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Batch:
    return Batch(torch.from_numpy(inputs).float(), torch.from_numpy(targets).float(), torch.from_numpy(mask).float())


# --- copy --------------------------------------------------------------------------------------


@dataclass
class CopyConfig:
    """Options of the copy task (module docstring)."""

    width: int = 8  # bits per vector
    min_length: int = 1  # shortest training sequence (vectors)
    max_length: int = 20  # longest training sequence (vectors); one length is drawn per batch
    eval_lengths: str = "20,40,80,120"  # comma-separated lengths, each an evaluation split "length{L}"
    curriculum_step: int = 4  # curriculum level k trains on lengths up to min_length + k·step

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "width", self.width, self.width >= 1, "≥ 1")
        _check_field(name, "min_length", self.min_length, self.min_length >= 1, "≥ 1")
        _check_field(name, "max_length", self.max_length, self.max_length >= self.min_length, "≥ min_length")
        _check_field(name, "curriculum_step", self.curriculum_step, self.curriculum_step >= 1, "≥ 1")
        self.parsed_eval_lengths()

    def parsed_eval_lengths(self) -> tuple[int, ...]:
        """The lengths of `eval_lengths`, in the order given."""
        return _parse_lengths(type(self).__name__, "eval_lengths", self.eval_lengths)


@register_task
class Copy(GrowingTask):
    """NTM copy: see the module docstring for the layout of a batch.

    Inputs (B, T, I) with I = width + 1, targets (B, T, O) with O = width, mask (B, T), where
    T = 2L + 1 for the batch's sequence length L.
    """

    name = "copy"
    recipe = {**NTM_RECIPE, "updates": 2000}
    Config = CopyConfig
    output_kind = "bits"

    def __init__(self, config: CopyConfig | None = None):
        super().__init__(config)
        self._split_lengths = {f"{COPY_SPLIT_PREFIX}{n}": (n, n) for n in self.config.parsed_eval_lengths()}

    @property
    def input_size(self) -> int:
        return self.config.width + 1  # the data bits, then the delimiter flag

    @property
    def output_size(self) -> int:
        return self.config.width

    def knob_bounds(self) -> tuple[int, int, int]:
        """The knob is the sequence length L, drawn once per batch."""
        c = self.config
        return c.min_length, c.max_length, c.curriculum_step

    def split_ranges(self) -> dict[str, tuple[int, int]]:
        """"length{L}": every sequence L long."""
        return self._split_lengths

    def episodes(self, rng: np.random.Generator, batch: int, length: int) -> Batch:
        """`batch` episodes of `length` vectors each (module docstring's table)."""
        width, steps = self.config.width, 2 * length + 1
        vectors = rng.integers(0, 2, size=(batch, length, width), dtype=np.int8)  # (B, L, O) fair coins
        inputs = np.zeros((batch, steps, width + 1), dtype=np.float32)  # (B, T, I)
        inputs[:, :length, :width] = vectors
        inputs[:, length, width] = 1  # the delimiter flag
        targets = np.zeros((batch, steps, width), dtype=np.float32)  # (B, T, O)
        targets[:, length + 1:] = vectors
        mask = np.zeros((batch, steps), dtype=np.float32)  # (B, T)
        mask[:, length + 1:] = 1
        return _batch(inputs, targets, mask)


# --- parity ------------------------------------------------------------------------------------


@dataclass
class ParityConfig:
    """Options of the parity task (module docstring)."""

    size: int = 64  # elements of the input vector
    min_ones: int = 1  # fewest nonzero (±1) elements of a training vector
    max_ones: int = 64  # most nonzero (±1) elements of a training vector
    eval_ones: str = ""  # comma-separated ranges of nonzero counts like "49-96", each a split "ones49-96"

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "size", self.size, self.size >= 1, "≥ 1")
        _check_field(name, "min_ones", self.min_ones, 1 <= self.min_ones <= self.size, "in [1, size]")
        _check_field(name, "max_ones", self.max_ones, self.min_ones <= self.max_ones <= self.size,
                     "in [min_ones, size]")
        self.parsed_eval_ones()

    def parsed_eval_ones(self) -> tuple[tuple[int, int], ...]:
        """The (lo, hi) ranges of `eval_ones`, in the order given."""
        return _parse_ranges(type(self).__name__, "eval_ones", self.eval_ones, self.size)


@register_task
class Parity(SequenceTask):
    """ACT parity: see the module docstring.

    Inputs (B, 1, I) with I = size, entries in {−1, 0, +1}; targets (B, 1, 1) the parity of the
    number of +1 entries; mask (B, 1) all ones.
    """

    name = "parity"
    # ACT's parity at 16 dimensions (the paper: 64), its 128-unit controller, batch 128, τ = 0.001.
    recipe = {"size": 16, "max_ones": 16, "halting": "act", "max_ponder": 10, "ponder_cost": 0.001, "hidden": 128,
              "batch": 128, "updates": 30000, "eval_every": 5000, "eval_batch": 1000, "log_every": 500,
              "checkpoint_every": 2000}
    Config = ParityConfig
    output_kind = "bits"

    def __init__(self, config: ParityConfig | None = None):
        super().__init__(config)
        self._split_ones = {f"{PARITY_SPLIT_PREFIX}{lo}-{hi}": (lo, hi) for lo, hi in self.config.parsed_eval_ones()}

    @property
    def input_size(self) -> int:
        return self.config.size

    @property
    def output_size(self) -> int:
        return 1

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self._split_ones)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """Vectors with k uniform in [min_ones, max_ones] nonzero entries (one level only)."""
        self.check_level(level)
        self.check_batch(batch)
        return self._examples(rng, batch, self.config.min_ones, self.config.max_ones)

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """Split "train" is `sample`; "ones{lo}-{hi}" has k uniform in [lo, hi]."""
        self.check_split(split)
        if split == "train":
            return self.sample(rng, batch)
        self.check_batch(batch)
        return self._examples(rng, batch, *self._split_ones[split])

    def _examples(self, rng: np.random.Generator, batch: int, lo: int, hi: int) -> Batch:
        """`batch` vectors, each with its own k uniform in [lo, hi]."""
        size = self.config.size
        ones = rng.integers(lo, hi + 1, size=(batch, 1))  # (B, 1) k per example
        # Each row a uniform random permutation of 0 … size−1: the k positions holding a value < k
        # are a uniform random k-subset.
        ranks = rng.permuted(np.tile(np.arange(size), (batch, 1)), axis=1)  # (B, I)
        signs = 2 * rng.integers(0, 2, size=(batch, size), dtype=np.int8) - 1  # (B, I) fair ±1
        vectors = np.where(ranks < ones, signs, 0).astype(np.float32)  # (B, I)
        parity = (vectors == 1).sum(1) % 2  # (B,)
        inputs = vectors[:, None, :]  # (B, 1, I)
        targets = parity.astype(np.float32)[:, None, None]  # (B, 1, 1)
        return _batch(inputs, targets, np.ones((batch, 1), dtype=np.float32))


# --- addition ----------------------------------------------------------------------------------


@dataclass
class AdditionConfig:
    """Options of the addition task (module docstring)."""

    min_numbers: int = 2  # fewest numbers in a sequence (the first step has no target)
    max_numbers: int = 5  # most numbers in a training sequence (the paper: 5)
    max_digits: int = 5  # most digits of a number (the paper: 5); I = 10·max_digits
    eval_numbers: str = "6-9"  # comma-separated ranges of numbers per sequence, each a split "numbers{lo}-{hi}"

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "min_numbers", self.min_numbers, self.min_numbers >= 2, "≥ 2 (the first step is unscored)")
        _check_field(name, "max_numbers", self.max_numbers, self.max_numbers >= self.min_numbers, "≥ min_numbers")
        _check_field(name, "max_digits", self.max_digits, self.max_digits >= 1, "≥ 1")
        self.parsed_eval_numbers()

    def parsed_eval_numbers(self) -> tuple[tuple[int, int], ...]:
        """The (lo, hi) ranges of `eval_numbers`, in the order given (each within [2, 99])."""
        ranges = _parse_ranges(type(self).__name__, "eval_numbers", self.eval_numbers, ADDITION_MAX_NUMBERS)
        _check_field(type(self).__name__, "eval_numbers", self.eval_numbers, all(lo >= 2 for lo, _ in ranges),
                     "ranges starting at ≥ 2")
        return ranges

    @property
    def sum_digits(self) -> int:
        """G, the digits of the largest sum any split can ask for (6 for the paper's 5 × 5 digits)."""
        most = max([self.max_numbers, *(hi for _, hi in self.parsed_eval_numbers())])
        return len(str(most * (10 ** self.max_digits - 1)))


@register_task
class Addition(SequenceTask):
    """ACT addition: see the module docstring.

    Inputs (B, T, I) with T the batch's longest sequence and I = 10·max_digits; targets
    (B, T, 11·G) one-hot per digit group; mask (B, T), 1 from the second number to the last.
    """

    name = "addition"
    # ACT's addition with a 128-unit controller (the paper: 512), τ = 0.001; not yet run to the end.
    recipe = {"halting": "act", "max_ponder": 10, "ponder_cost": 0.001, "hidden": 128, "updates": 20000,
              "eval_every": 2000, "checkpoint_every": 500}
    Config = AdditionConfig
    output_kind = "classes"

    def __init__(self, config: AdditionConfig | None = None):
        super().__init__(config)
        self._split_numbers = {f"{ADDITION_SPLIT_PREFIX}{lo}-{hi}": (lo, hi)
                               for lo, hi in self.config.parsed_eval_numbers()}
        self.class_groups = self.config.sum_digits  # an instance value: G depends on the config

    @property
    def input_size(self) -> int:
        return DIGITS * self.config.max_digits

    @property
    def output_size(self) -> int:
        return (DIGITS + 1) * self.class_groups

    @property
    def levels(self) -> int:
        return self.config.max_digits

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self._split_numbers)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """Sequences of min_numbers … max_numbers numbers of up to level + 1 digits each."""
        level = self.check_level(level)
        self.check_batch(batch)
        return self._sequences(rng, batch, self.config.min_numbers, self.config.max_numbers, level + 1)

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """Split "train" is `sample`; "numbers{lo}-{hi}" has lo … hi numbers of up to max_digits digits."""
        self.check_split(split)
        if split == "train":
            return self.sample(rng, batch)
        self.check_batch(batch)
        return self._sequences(rng, batch, *self._split_numbers[split], self.config.max_digits)

    def encode_sum(self, total: int) -> list[int]:
        """The G target classes of a sum: its digits, most significant first, then END."""
        digits = [int(d) for d in str(total)]
        if len(digits) > self.class_groups:
            raise ValueError(f"addition: the sum {total} has more than G = {self.class_groups} digits")
        return digits + [END] * (self.class_groups - len(digits))

    @staticmethod
    def decode_sum(classes) -> int | None:
        """The sum that G classes spell (digits up to the first END), or None when they spell none."""
        digits = []
        for c in (int(c) for c in classes):
            if c == END:
                break
            digits.append(str(c))
        return int("".join(digits)) if digits else None

    def _sequences(self, rng: np.random.Generator, batch: int, lo: int, hi: int, max_digits: int) -> Batch:
        """`batch` sequences, each of its own count of numbers in [lo, hi], digits up to `max_digits`."""
        groups, width = self.class_groups, self.input_size
        counts = rng.integers(lo, hi + 1, size=batch)  # (B,) K per sequence
        steps = int(counts.max())
        lengths = rng.integers(1, max_digits + 1, size=(batch, steps))  # (B, T) D per number
        digits = rng.integers(0, DIGITS, size=(batch, steps, self.config.max_digits))  # (B, T, D_max)
        inputs = np.zeros((batch, steps, width), dtype=np.float32)  # (B, T, I)
        targets = np.zeros((batch, steps, groups * (DIGITS + 1)), dtype=np.float32)  # (B, T, O)
        mask = np.zeros((batch, steps), dtype=np.float32)  # (B, T)
        for b in range(batch):
            total = 0
            for t in range(int(counts[b])):
                number = digits[b, t, :lengths[b, t]]  # (D,) most significant first
                inputs[b, t, DIGITS * np.arange(len(number)) + number] = 1
                total += int("".join(map(str, number)))
                classes = self.encode_sum(total)
                targets[b, t, (DIGITS + 1) * np.arange(groups) + np.array(classes)] = 1
                mask[b, t] = t > 0  # no target at the first step
        return _batch(inputs, targets, mask)
