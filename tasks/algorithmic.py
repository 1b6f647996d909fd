"""Two algorithmic sequence tasks: NTM `copy` and ACT `parity`.

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

Everything random comes from the injected `numpy.random.Generator`: the same seed gives the same
batch, and no global random state is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffvm.tasks.base import Batch, GrowingTask, SequenceTask, register_task

__all__ = ["Copy", "CopyConfig", "Parity", "ParityConfig"]

COPY_SPLIT_PREFIX = "length"  # split "length40": every sequence 40 vectors long
PARITY_SPLIT_PREFIX = "ones"  # split "ones49-96": k uniform in [49, 96]


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
