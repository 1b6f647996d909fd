"""Sequence tasks: what a memory-augmented model is trained on, and the one registry of them.

A task turns an injected `numpy.random.Generator` into batches of input/target sequences, says
how outputs are scored, and names its difficulty knobs as curriculum *levels* (level 0 the
easiest, level `levels − 1` the full training distribution). The trainer asks for a batch at
the curriculum's current level; evaluation asks for a named *split* (the training distribution,
or harder ones such as longer sequences).

    @register_task
    class Copy(SequenceTask):
        name = "copy"
        Config = CopyConfig          # a dataclass of the task's options, commented defaults
        ...

Outputs are logits (B, T, O). `output_kind` picks the loss and the default metrics:
"bits" (independent sigmoid channels, targets in {0, 1}) or "classes" (softmaxes, targets
one-hot). A "classes" task may answer several symbols at once: `class_groups` G splits the O
outputs into G softmaxes of O / G classes each (ACT's addition answers 6 digits a step).
Only the time steps where `mask` is 1 are scored.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Batch", "Curriculum", "GrowingTask", "SequenceTask", "TASKS", "curriculum_levels", "curriculum_top",
           "get_task", "register_task"]

# Curriculum defaults: advance a level when the mean exact-match accuracy of the last
# `CURRICULUM_WINDOW` training batches reaches `CURRICULUM_THRESHOLD` (DNC lessons end at 90 %).
CURRICULUM_THRESHOLD = 0.9
CURRICULUM_WINDOW = 20


class Batch(NamedTuple):
    """A batch of sequences, batch first.

    Attributes:
        inputs: (B, T, I) float inputs.
        targets: (B, T, O) float targets: bits in {0, 1}, or one-hot classes.
        mask: (B, T) float, 1 at the time steps that are scored.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(*(x.to(device) for x in self))


class SequenceTask(ABC):
    """A task of input/target sequences (module docstring).

    Subclasses set `name`, `Config` (a dataclass with a `validate()` that names a bad field) and
    `output_kind`, and implement `input_size`, `output_size`, `levels`, `splits`, `sample` and
    `sample_split`.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    output_kind: ClassVar[str] = "bits"
    class_groups: ClassVar[int] = 1  # "classes": G softmax groups side by side in a step's O outputs
    # The task's documented default configuration: fields of its Config, ModelConfig and TrainConfig
    # (by name) that `diffvm train NAME` sets differently from their defaults, the paper's setup at a
    # size that trains on 2 CPU cores in about an hour. An option given on the command line wins.
    recipe: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None):
        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise TypeError(f"task {self.name!r} needs a {self.Config.__name__}, got {type(config).__name__}")
        config.validate()
        self.config = config

    @property
    @abstractmethod
    def input_size(self) -> int:
        """I, the width of an input step."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """O, the width of an output step."""

    @property
    def levels(self) -> int:
        """How many curriculum levels the task has (1: no curriculum)."""
        return 1

    @property
    @abstractmethod
    def splits(self) -> tuple[str, ...]:
        """The evaluation splits, the training distribution ("train") first."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """A training batch at curriculum `level` (None: the last, the full distribution)."""

    @abstractmethod
    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """An evaluation batch of a split of `splits`."""

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; its splits: {', '.join(self.splits)}")

    def check_batch(self, batch: int) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"task {self.name!r}: batch = {batch!r}: must be an int ≥ 1")

    def check_level(self, level: int | None) -> int:
        level = self.levels - 1 if level is None else level
        if not 0 <= level < self.levels:
            raise ValueError(f"task {self.name!r}: level {level} out of range 0..{self.levels - 1}")
        return level

    # --- scoring ----------------------------------------------------------------------------
    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, O) -> (B, T, G, O / G): a "classes" step's outputs, one row per softmax group."""
        return x.unflatten(-1, (self.class_groups, x.shape[-1] // self.class_groups))

    def step_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, T) the loss of every time step, zero where unscored (summed over a step's bits or groups).

        Args:
            logits: (B, T, O) the model's outputs before the sigmoid / softmax.
        """
        if self.output_kind == "bits":
            per_step = F.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none").sum(-1)
        else:
            log_p = F.log_softmax(self._grouped(logits), dim=-1)  # (B, T, G, C)
            per_step = -(self._grouped(batch.targets) * log_p).sum((-1, -2))
        return per_step * batch.mask  # (B, T)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B,) each sequence's loss: summed over its scored steps, as the NTM papers do."""
        return self.step_loss(logits, batch).sum(1)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, O) the model's output probabilities: sigmoids, or each group's softmax."""
        if self.output_kind == "bits":
            return torch.sigmoid(logits)
        return torch.softmax(self._grouped(logits), -1).flatten(-2)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T, O) hard outputs: bits thresholded at 0.5, or each group's one-hot argmax class."""
        if self.output_kind == "bits":
            return (logits > 0).to(logits.dtype)
        grouped = self._grouped(logits)  # (B, T, G, C)
        return F.one_hot(grouped.argmax(-1), grouped.shape[-1]).flatten(-2).to(logits.dtype)

    def metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Accuracy figures of a batch.

        "bits": `bit_errors` (wrong bits per sequence, the NTM papers' figure) and `exact` (the
        fraction of sequences without an error). "classes": `accuracy` (per scored symbol: a step's
        class, or each group's with several groups) and `exact` (sequences with every scored symbol
        right).
        """
        with torch.no_grad():
            mask = batch.mask > 0  # (B, T)
            if self.output_kind == "bits":
                errors = ((self.predict(logits) != batch.targets).sum(-1) * mask).sum(1)  # (B,)
                return {"bit_errors": errors.float().mean().item(), "exact": (errors == 0).float().mean().item()}
            wrong = self._grouped(logits).argmax(-1) != self._grouped(batch.targets).argmax(-1)  # (B, T, G)
            wrong = wrong & mask.unsqueeze(-1)
            scored = (mask.sum() * self.class_groups).clamp(min=1)
            exact = (~wrong.flatten(1).any(1)).float().mean().item()
            return {"accuracy": 1 - (wrong.sum() / scored).item(), "exact": exact}


def curriculum_levels(low: int, high: int, step: int) -> int:
    """1 + ceil((high − low) / step): one level per `step` of growth of a knob's top, low to high."""
    return 1 + -(-(high - low) // step)


def curriculum_top(low: int, high: int, step: int, level: int) -> int:
    """The largest knob value drawn at curriculum `level`: the top grows by `step` a level, capped."""
    return min(low + level * step, high)


class GrowingTask(SequenceTask):
    """A task whose difficulty is one integer knob drawn once per batch (a length, a number of items).

    Curriculum level k draws the knob uniformly from [low, low + k·step] (the last level up to
    high); each split other than "train" draws it from its own range. Subclasses give
    `knob_bounds()`, `split_ranges()` and `episodes()`; `draw` may restrict the values drawn.
    """

    @abstractmethod
    def knob_bounds(self) -> tuple[int, int, int]:
        """(low, high, step) of the knob over training and the curriculum."""

    @abstractmethod
    def split_ranges(self) -> dict[str, tuple[int, int]]:
        """Each evaluation split's (lowest, highest) knob value, in order."""

    @abstractmethod
    def episodes(self, rng: np.random.Generator, batch: int, value: int) -> Batch:
        """A batch whose knob is `value`."""

    def draw(self, rng: np.random.Generator, low: int, high: int) -> int:
        """A knob value uniform in [low, high]."""
        return int(rng.integers(low, high + 1))

    @property
    def levels(self) -> int:
        low, high, step = self.knob_bounds()
        return curriculum_levels(low, high, step)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.split_ranges())

    def knob_range(self, level: int | None = None) -> tuple[int, int]:
        """(lowest, highest) knob value drawn at curriculum `level` (None: the last level)."""
        level = self.check_level(level)
        low, high, step = self.knob_bounds()
        return low, curriculum_top(low, high, step, level)

    def sample(self, rng: np.random.Generator, batch: int, level: int | None = None) -> Batch:
        """A batch whose knob is drawn once, uniform in `knob_range(level)`."""
        self.check_batch(batch)
        return self.episodes(rng, batch, self.draw(rng, *self.knob_range(level)))

    def sample_split(self, rng: np.random.Generator, batch: int, split: str) -> Batch:
        """Split "train" is `sample` at the last level; another draws the knob from its range."""
        self.check_split(split)
        if split == "train":
            return self.sample(rng, batch)
        self.check_batch(batch)
        return self.episodes(rng, batch, self.draw(rng, *self.split_ranges()[split]))


class Curriculum:
    """Advances a task's level when training batches are answered well enough.

    The level goes up by one when the mean exact-match accuracy of the last `window` training
    batches reaches `threshold`; it never goes past the task's last level.
    """

    def __init__(self, levels: int, *, threshold: float = CURRICULUM_THRESHOLD, window: int = CURRICULUM_WINDOW,
                 start: int = 0):
        if levels < 1 or window < 1 or not 0 < threshold <= 1 or not 0 <= start < levels:
            raise ValueError(f"bad curriculum: levels={levels}, threshold={threshold}, window={window}, start={start}")
        self.levels, self.threshold, self.window = levels, threshold, window
        self.level = start
        self.recent: list[float] = []

    def observe(self, exact: float) -> bool:
        """Record a training batch's exact-match accuracy; True when the level went up."""
        if self.level == self.levels - 1:
            return False
        self.recent = [*self.recent[-(self.window - 1):], float(exact)]
        if len(self.recent) == self.window and sum(self.recent) / self.window >= self.threshold:
            self.level += 1
            self.recent = []
            return True
        return False

    def state_dict(self) -> dict:
        return {"level": self.level, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        if not 0 <= state["level"] < self.levels:
            raise ValueError(f"curriculum level {state['level']} out of range 0..{self.levels - 1}")
        self.level, self.recent = int(state["level"]), [float(x) for x in state["recent"]]


TASKS: dict[str, type[SequenceTask]] = {}


def register_task(cls: type[SequenceTask]) -> type[SequenceTask]:
    """Class decorator: make a task trainable by name (`diffvm train NAME`)."""
    if not (isinstance(cls, type) and issubclass(cls, SequenceTask)):
        raise TypeError(f"register_task takes a SequenceTask subclass, got {cls!r}")
    if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
        raise TypeError(f"task {cls.__name__}: Config must be a dataclass")
    if cls.output_kind not in ("bits", "classes"):
        raise ValueError(f"task {cls.__name__}: output_kind must be 'bits' or 'classes', got {cls.output_kind!r}")
    if not (isinstance(cls.class_groups, int) and cls.class_groups >= 1):
        raise ValueError(f"task {cls.__name__}: class_groups must be an int ≥ 1, got {cls.class_groups!r}")
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"a task named {cls.name!r} is already registered ({TASKS[cls.name].__qualname__})")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[SequenceTask]:
    """The task class registered as `name`; the error lists the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS)) or '(none)'}")
    return TASKS[name]
