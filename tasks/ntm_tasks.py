"""The other NTM tasks: `repeat_copy`, `associative_recall` and `priority_sort`.

All three come from Graves, Wayne & Danihelka 2014, "Neural Turing Machines"; every vector bit is
a fair coin, and the outputs are independent bits ("bits" output kind).

**repeat_copy** (§4.2). L random `width`-bit vectors, then one delimiter step that also carries
the repeat count c on its own input channel; the model must then output the L vectors c times
over and finally raise an end-marker channel. The paper normalises the count "to have mean zero
and variance one": here the count channel holds (c − μ) / σ, with μ and σ the mean and standard
deviation of the training distribution of c (uniform over the integers [min_repeats,
max_repeats]: μ = (min + max) / 2, σ² = ((max − min + 1)² − 1) / 12), so an evaluation split
with more repeats than trained on shows counts beyond the training range on the same scale.
With I = width + 2 inputs (data, delimiter flag, count), O = width + 1 outputs (data, end
marker) and T = L + 1 + c·L + 1:

    step t             0 … L−1        L              L+1 … L+cL            L+cL+1
    inputs[:width]     x_0 … x_{L−1}  0              0                     0
    inputs[width]      0              1 (delimiter)  0                     0
    inputs[width+1]    0              (c − μ) / σ    0                     0
    targets[:width]    0              0              (x_0 … x_{L−1}) × c   0
    targets[width]     0              0              0                     1 (end marker)
    mask               0              0              1                     1

**associative_recall** (§4.3). An item is `item_length` vectors of `width` bits. The episode
shows n items (n uniform in [min_items, max_items]), each preceded by an item delimiter step
(input channel width); then a query delimiter (input channel width + 1) and a copy of item q,
q uniform among the first n − 1 items; during the last `item_length` steps the model must output
item q + 1, the item that followed the query in the sequence. With k = item_length, I = width + 2,
O = width and T = n(k + 1) + (k + 1) + k:

    steps              j(k+1)     j(k+1)+1 … j(k+1)+k   n(k+1)     n(k+1)+1 … n(k+1)+k   (n+1)(k+1) … T−1
    inputs[:width]     0          item j                0          item q                0
    inputs[width]      1          0                     0          0                     0
    inputs[width+1]    0          0                     1          0                     0
    targets            0          0                     0          0                     item q + 1
    mask               0          0                     0          0                     1

Items are not forced to differ: with the paper's 18 bits per item two equal items are rare
(2⁻¹⁸ a pair), and the target is always the item after position q.

**priority_sort** (§4.5). `count` random `width`-bit vectors, each with a priority uniform in
[−1, 1] on an extra input channel, then a delimiter step; during the `keep` steps that follow
the model must output the `keep` vectors of highest priority, from the highest down. With
I = width + 2 (data, priority, delimiter flag), O = width and T = count + 1 + keep:

    step t             0 … count−1     count          count+1 … count+keep
    inputs[:width]     x_0 … x_{n−1}   0              0
    inputs[width]      p_0 … p_{n−1}   0              0
    inputs[width+1]    0               1 (delimiter)  0
    targets            0               0              x sorted by p, highest first, first `keep`
    mask               0               0              1

As for copy, one length (L and c; n) is drawn per batch, so a batch needs no padding, and
curriculum level k raises the longest training length (L; n) to min(min + k·curriculum_step,
max). Everything random comes from the injected `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffvm.tasks.algorithmic import NTM_RECIPE, _batch, _check_field, _parse_lengths
from diffvm.tasks.base import Batch, GrowingTask, SequenceTask, curriculum_levels, curriculum_top, register_task

__all__ = [
    "AssociativeRecall", "AssociativeRecallConfig", "PrioritySort", "PrioritySortConfig", "RepeatCopy",
    "RepeatCopyConfig",
]

LENGTH_SPLIT_PREFIX = "length"  # repeat_copy split "length20": every sequence 20 vectors long
REPEATS_SPLIT_PREFIX = "repeats"  # repeat_copy split "repeats20": every sequence repeated 20 times
ITEMS_SPLIT_PREFIX = "items"  # associative_recall split "items12": every episode 12 items long
MIN_RECALL_ITEMS = 2  # the query is one of the first n − 1 items, so an episode needs two
PRIORITY_RANGE = (-1.0, 1.0)  # §4.5: priorities uniform in [−1, 1]


def _fair_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2, size=shape, dtype=np.int8)


# --- repeat copy -------------------------------------------------------------------------------


@dataclass
class RepeatCopyConfig:
    """Options of the repeat-copy task (module docstring)."""

    width: int = 8  # bits per vector
    min_length: int = 1  # shortest training sequence (vectors)
    max_length: int = 10  # longest training sequence (vectors); one length is drawn per batch
    min_repeats: int = 1  # fewest training repeats c
    max_repeats: int = 10  # most training repeats c; one count is drawn per batch
    eval_lengths: str = "20"  # comma-separated lengths, each a split "length{L}" (c drawn as in training)
    eval_repeats: str = "20"  # comma-separated repeat counts, each a split "repeats{c}" (L drawn as in training)
    curriculum_step: int = 3  # curriculum level k trains on lengths up to min_length + k·step

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "width", self.width, self.width >= 1, "≥ 1")
        _check_field(name, "min_length", self.min_length, self.min_length >= 1, "≥ 1")
        _check_field(name, "max_length", self.max_length, self.max_length >= self.min_length, "≥ min_length")
        _check_field(name, "min_repeats", self.min_repeats, self.min_repeats >= 1, "≥ 1")
        _check_field(name, "max_repeats", self.max_repeats, self.max_repeats >= self.min_repeats, "≥ min_repeats")
        _check_field(name, "curriculum_step", self.curriculum_step, self.curriculum_step >= 1, "≥ 1")
        self.parsed_eval_lengths()
        self.parsed_eval_repeats()

    def parsed_eval_lengths(self) -> tuple[int, ...]:
        """The lengths of `eval_lengths`, in the order given."""
        return _parse_lengths(type(self).__name__, "eval_lengths", self.eval_lengths)

    def parsed_eval_repeats(self) -> tuple[int, ...]:
        """The repeat counts of `eval_repeats`, in the order given."""
        return _parse_lengths(type(self).__name__, "eval_repeats", self.eval_repeats)


@register_task
class RepeatCopy(SequenceTask):
    """NTM repeat copy: see the module docstring for the layout of a batch.

    Inputs (B, T, I) with I = width + 2, targets (B, T, O) with O = width + 1, mask (B, T), where
    T = L + 1 + c·L + 1 for the batch's length L and repeat count c.
    """

    name = "repeat_copy"
    recipe = NTM_RECIPE
    Config = RepeatCopyConfig
    output_kind = "bits"

    def __init__(self, config: RepeatCopyConfig | None = None):
        super().__init__(config)
        c = self.config
        self._split_lengths = {f"{LENGTH_SPLIT_PREFIX}{n}": n for n in c.parsed_eval_lengths()}
        self._split_repeats = {f"{REPEATS_SPLIT_PREFIX}{n}": n for n in c.parsed_eval_repeats()}

    @property
    def input_size(self) -> int:
        return self.config.width + 2  # the data bits, the delimiter flag, the repeat count

    @property
    def output_size(self) -> int:
        return self.config.width + 1  # the data bits, the end marker

    @property
    def levels(self) -> int:
        """One level per `curriculum_step` of growth in the longest length, the last one capped."""
        c = self.config
        return curriculum_levels(c.min_length, c.max_length, c.curriculum_step)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self._split_lengths, *self._split_repeats)

    def length_range(self, level: int | None = None) -> tuple[int, int]:
        """(shortest, longest) training length at curriculum `level` (None: the last level)."""
        level = self.check_level(level)
        c = self.config
        return c.min_length, curriculum_top(c.min_length, c.max_length, c.curriculum_step, level)

    def count_input(self, repeats: int) -> float:
        """The count channel for `repeats`: (c − μ) / σ over the uniform training counts (§4.2)."""
        lo, hi = self.config.min_repeats, self.config.max_repeats
        mean = (lo + hi) / 2
        variance = ((hi - lo + 1) ** 2 - 1) / 12  # of a uniform distribution over hi − lo + 1 integers
        # One training count (σ = 0): only centre it, the scale then carries nothing to normalise.
        return (repeats - mean) / (variance ** 0.5 if variance > 0 else 1.0)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """A batch of one length L, uniform in `length_range(level)`, and one count c, uniform in
        [min_repeats, max_repeats], both drawn once for the batch."""
        self.check_batch(batch)
        lo, hi = self.length_range(level)
        length = int(rng.integers(lo, hi + 1))
        return self._episodes(rng, batch, length, self._training_repeats(rng))

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """Split "train" is `sample` at the last level; "length{L}" has every sequence L long and
        c as in training; "repeats{c}" repeats every sequence c times, L as in training."""
        self.check_split(split)
        if split == "train":
            return self.sample(rng, batch)
        self.check_batch(batch)
        c = self.config
        if split in self._split_lengths:
            return self._episodes(rng, batch, self._split_lengths[split], self._training_repeats(rng))
        length = int(rng.integers(c.min_length, c.max_length + 1))
        return self._episodes(rng, batch, length, self._split_repeats[split])

    def _training_repeats(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.config.min_repeats, self.config.max_repeats + 1))

    def _episodes(self, rng: np.random.Generator, batch: int, length: int, repeats: int) -> Batch:
        """`batch` episodes of `length` vectors repeated `repeats` times (module docstring's table)."""
        width = self.config.width
        answer = length + 1  # the first answer step
        end = answer + repeats * length  # the end-marker step, the last one
        vectors = _fair_bits(rng, (batch, length, width))  # (B, L, width)
        inputs = np.zeros((batch, end + 1, width + 2), dtype=np.float32)  # (B, T, I)
        inputs[:, :length, :width] = vectors
        inputs[:, length, width] = 1  # the delimiter flag
        inputs[:, length, width + 1] = self.count_input(repeats)
        targets = np.zeros((batch, end + 1, width + 1), dtype=np.float32)  # (B, T, O)
        targets[:, answer:end, :width] = np.tile(vectors, (1, repeats, 1))  # (B, c·L, width)
        targets[:, end, width] = 1  # the end marker
        mask = np.zeros((batch, end + 1), dtype=np.float32)  # (B, T)
        mask[:, answer:] = 1
        return _batch(inputs, targets, mask)


# --- associative recall ------------------------------------------------------------------------


@dataclass
class AssociativeRecallConfig:
    """Options of the associative-recall task (module docstring)."""

    width: int = 6  # bits per vector
    item_length: int = 3  # vectors per item
    min_items: int = 2  # fewest items of a training episode
    max_items: int = 6  # most items of a training episode; one count is drawn per batch
    eval_items: str = "6,12"  # comma-separated item counts (each ≥ 2), each a split "items{n}"
    curriculum_step: int = 1  # curriculum level k trains on up to min_items + k·step items

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "width", self.width, self.width >= 1, "≥ 1")
        _check_field(name, "item_length", self.item_length, self.item_length >= 1, "≥ 1")
        _check_field(name, "min_items", self.min_items, self.min_items >= MIN_RECALL_ITEMS, f"≥ {MIN_RECALL_ITEMS}")
        _check_field(name, "max_items", self.max_items, self.max_items >= self.min_items, "≥ min_items")
        _check_field(name, "curriculum_step", self.curriculum_step, self.curriculum_step >= 1, "≥ 1")
        self.parsed_eval_items()

    def parsed_eval_items(self) -> tuple[int, ...]:
        """The item counts of `eval_items`, in the order given."""
        name = type(self).__name__
        counts = _parse_lengths(name, "eval_items", self.eval_items)
        _check_field(name, "eval_items", self.eval_items, all(n >= MIN_RECALL_ITEMS for n in counts),
                     f"item counts ≥ {MIN_RECALL_ITEMS} (the query is never the last item)")
        return counts


@register_task
class AssociativeRecall(GrowingTask):
    """NTM associative recall: see the module docstring for the layout of a batch.

    Inputs (B, T, I) with I = width + 2, targets (B, T, O) with O = width, mask (B, T), where
    T = n(k + 1) + (k + 1) + k for the batch's item count n and k = item_length.
    """

    name = "associative_recall"
    recipe = NTM_RECIPE
    Config = AssociativeRecallConfig
    output_kind = "bits"

    def __init__(self, config: AssociativeRecallConfig | None = None):
        super().__init__(config)
        self._split_items = {f"{ITEMS_SPLIT_PREFIX}{n}": (n, n) for n in self.config.parsed_eval_items()}

    @property
    def input_size(self) -> int:
        return self.config.width + 2  # the data bits, the item delimiter, the query delimiter

    @property
    def output_size(self) -> int:
        return self.config.width

    def knob_bounds(self) -> tuple[int, int, int]:
        """The knob is the number of items n, drawn once per batch."""
        c = self.config
        return c.min_items, c.max_items, c.curriculum_step

    def split_ranges(self) -> dict[str, tuple[int, int]]:
        """"items{n}": every episode n items long."""
        return self._split_items

    def episodes(self, rng: np.random.Generator, batch: int, items: int) -> Batch:
        """`batch` episodes of `items` items each (module docstring's table)."""
        width, k = self.config.width, self.config.item_length
        query = items * (k + 1)  # the query delimiter's step
        answer = query + k + 1  # the first answer step
        steps = answer + k
        contents = _fair_bits(rng, (batch, items, k, width))  # (B, n, k, width)
        chosen = rng.integers(0, items - 1, size=batch)  # (B,) q, never the last item
        rows = np.arange(batch)
        # Item j takes steps j(k+1) … j(k+1)+k: its delimiter, then its k vectors.
        blocks = np.zeros((batch, items, k + 1, width + 2), dtype=np.float32)  # (B, n, k+1, I)
        blocks[:, :, 0, width] = 1  # the item delimiters
        blocks[:, :, 1:, :width] = contents
        inputs = np.zeros((batch, steps, width + 2), dtype=np.float32)  # (B, T, I)
        inputs[:, :query] = blocks.reshape(batch, query, width + 2)  # (B, n(k+1), I)
        inputs[:, query, width + 1] = 1  # the query delimiter
        inputs[:, query + 1:answer, :width] = contents[rows, chosen]  # (B, k, width) item q
        targets = np.zeros((batch, steps, width), dtype=np.float32)  # (B, T, O)
        targets[:, answer:] = contents[rows, chosen + 1]  # (B, k, width) item q + 1
        mask = np.zeros((batch, steps), dtype=np.float32)  # (B, T)
        mask[:, answer:] = 1
        return _batch(inputs, targets, mask)


# --- priority sort -----------------------------------------------------------------------------


@dataclass
class PrioritySortConfig:
    """Options of the priority-sort task (module docstring)."""

    width: int = 8  # bits per vector
    count: int = 20  # vectors shown, each with a priority uniform in [−1, 1]
    keep: int = 16  # vectors of highest priority to output, highest first

    def validate(self) -> None:
        """Raise `ValueError` naming the first field out of range."""
        name = type(self).__name__
        _check_field(name, "width", self.width, self.width >= 1, "≥ 1")
        _check_field(name, "count", self.count, self.count >= 1, "≥ 1")
        _check_field(name, "keep", self.keep, 1 <= self.keep <= self.count, "in [1, count]")


@register_task
class PrioritySort(SequenceTask):
    """NTM priority sort: see the module docstring for the layout of a batch.

    Inputs (B, T, I) with I = width + 2, targets (B, T, O) with O = width, mask (B, T), where
    T = count + 1 + keep. One split ("train") and one level.
    """

    name = "priority_sort"
    recipe = NTM_RECIPE
    Config = PrioritySortConfig
    output_kind = "bits"

    @property
    def input_size(self) -> int:
        return self.config.width + 2  # the data bits, the priority, the delimiter flag

    @property
    def output_size(self) -> int:
        return self.config.width

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train",)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """A batch of the one training distribution (one level only)."""
        self.check_level(level)
        self.check_batch(batch)
        return self._episodes(rng, batch)

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """Split "train" is `sample`, the only split."""
        self.check_split(split)
        return self.sample(rng, batch)

    def _episodes(self, rng: np.random.Generator, batch: int) -> Batch:
        """`batch` episodes (module docstring's table)."""
        width, count, keep = self.config.width, self.config.count, self.config.keep
        steps = count + 1 + keep
        vectors = _fair_bits(rng, (batch, count, width))  # (B, n, width)
        # Sorted as the model sees them (float32); a tie (about 2⁻²⁴ a pair) keeps the earlier vector first.
        priorities = rng.uniform(*PRIORITY_RANGE, size=(batch, count)).astype(np.float32)  # (B, n)
        order = np.argsort(-priorities, axis=1, kind="stable")[:, :keep]  # (B, keep) highest priority first
        inputs = np.zeros((batch, steps, width + 2), dtype=np.float32)  # (B, T, I)
        inputs[:, :count, :width] = vectors
        inputs[:, :count, width] = priorities
        inputs[:, count, width + 1] = 1  # the delimiter flag
        targets = np.zeros((batch, steps, width), dtype=np.float32)  # (B, T, O)
        targets[:, count + 1:] = np.take_along_axis(vectors, order[:, :, None], axis=1)  # (B, keep, width)
        mask = np.zeros((batch, steps), dtype=np.float32)  # (B, T)
        mask[:, count + 1:] = 1
        return _batch(inputs, targets, mask)
