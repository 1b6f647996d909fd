"""Value types of the machine.

Every value on the machine carries a type, declared as data. A type owns everything that differs
between kinds of value, in one place: its per-example shape, its soft merge, its hard form, the
round trip to plain Python values used by the hard interpreter, the samples `check_op` draws, and
the distance tests use. Nothing elsewhere switches on the kind of a type.

Notation: B is the batch, K the number of candidates merged, W/R/N the size of a sized type.

| type            | per example | soft values          | hard (plain) value |
|-----------------|-------------|----------------------|--------------------|
| `Scalar`        | `()`        | any real             | `float`            |
| `Bool`          | `()`        | in [0, 1]            | `bool` (> 0.5)     |
| `Vector[W]`     | `(W,)`      | any reals            | `tuple[float, ...]`|
| `Selection[R]`  | `(R,)`      | each in [0, 1]       | `tuple[bool, ...]` |
| `Pointer[N]`    | `(N,)`      | on the simplex       | `int` (argmax)     |
| `Categorical[K]`| `(K,)`      | on the simplex       | `int` (argmax)     |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from diffvm.interp.kernels.merge import merge_results

__all__ = [
    "ValueType",
    "Scalar",
    "Bool",
    "Vector",
    "Selection",
    "Pointer",
    "Categorical",
    "parse_type",
]

# A soft truth value or selection counts as true above this threshold.
TRUTH_THRESHOLD = 0.5
# Tolerance when checking that a distribution sums to one (float32 round-off over a few terms).
SIMPLEX_ATOL = 1e-4


@dataclass(frozen=True)
class ValueType:
    """A machine value type. Subclasses set `shape` and override what differs."""

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def __str__(self) -> str:
        return type(self).__name__.removesuffix("Type")

    # --- the machine boundary -------------------------------------------------------------
    def check(self, value: Any, *, what: str) -> None:
        """Raise `TypeError` naming `what` unless `value` is a float tensor of shape (B, *shape)."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{what}: expected a tensor of type {self}, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{what}: expected a floating tensor of type {self}, got {value.dtype}")
        if value.dim() != 1 + len(self.shape) or tuple(value.shape[1:]) != self.shape:
            raise TypeError(
                f"{what}: type {self} needs shape (B, {', '.join(map(str, self.shape))}) "
                f"but got {tuple(value.shape)}".replace(", )", ")")
            )

    def check_values(self, value: torch.Tensor, *, what: str) -> None:
        """Raise `ValueError` if the values leave the type's domain (NaN/Inf always do)."""
        if not torch.isfinite(value).all():
            raise ValueError(f"{what}: {self} value holds NaN or Inf")

    # --- soft semantics -------------------------------------------------------------------
    def merge(self, weights: torch.Tensor, candidates: torch.Tensor, previous: torch.Tensor):
        """The soft register update r = Σ_k w_k·y_k + (1 − Σ_k w_k)·r_prev.

        Args:
            weights: (B, K) probability of each candidate, Σ_k w_k ≤ 1.
            candidates: (K, B, *shape) each candidate's value.
            previous: (B, *shape) the register before the step.
        Returns:
            (B, *shape). A convex combination, so every domain below (an interval, a simplex)
            is preserved and no type needs its own merge.
        """
        return merge_results(weights, candidates, previous)  # the fused kernel on CUDA (interp/kernels/merge.py)

    def initial(self, batch: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """The register's value before any step wrote it: (B, *shape)."""
        return torch.zeros(batch, *self.shape, device=device, dtype=dtype)

    # --- hard semantics -------------------------------------------------------------------
    def harden(self, value: torch.Tensor) -> torch.Tensor:
        """The hard form of a soft value, same shape: (B, *shape)."""
        return value

    def to_plain(self, value: torch.Tensor) -> Any:
        """One example's hardened value (*shape) as a plain Python value."""
        raise NotImplementedError

    def from_plain(self, plain: Any, *, dtype=torch.float64) -> torch.Tensor:
        """A plain Python value as one example's tensor (*shape)."""
        raise NotImplementedError

    # --- tests ------------------------------------------------------------------------------
    def sample(self, generator: torch.Generator, batch: int, *, hard: bool, dtype=torch.float64):
        """Random values (B, *shape): hard-valued ones if `hard`, else smooth interior ones."""
        raise NotImplementedError

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-example distance (B,) between two values of this type."""
        return (a - b).abs().reshape(a.shape[0], -1).amax(dim=1)

    def plain_close(self, a: Any, b: Any, *, rtol: float = 1e-6) -> bool:
        """Whether two plain values agree (floats within `rtol`, everything else exactly)."""
        return a == b


# --------------------------------------------------------------------------------------------
# Unsized types


@dataclass(frozen=True)
class ScalarType(ValueType):
    """A real number."""

    shape: ClassVar[tuple[int, ...]] = ()

    def to_plain(self, value):
        return float(value)

    def from_plain(self, plain, *, dtype=torch.float64):
        return torch.tensor(float(plain), dtype=dtype)

    def sample(self, generator, batch, *, hard, dtype=torch.float64):
        if hard:  # small integers: exact in every float format, no ties broken by round-off
            return torch.randint(-9, 10, (batch,), generator=generator).to(dtype)
        return torch.randn(batch, generator=generator, dtype=dtype) * 3

    def plain_close(self, a, b, *, rtol=1e-6):
        return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


@dataclass(frozen=True)
class BoolType(ValueType):
    """A truth value in [0, 1]; hard form `value > 0.5`."""

    shape: ClassVar[tuple[int, ...]] = ()

    def check_values(self, value, *, what):
        super().check_values(value, what=what)
        _check_unit_interval(self, value, what)

    def harden(self, value):
        return (value > TRUTH_THRESHOLD).to(value.dtype)

    def to_plain(self, value):
        return bool(value > TRUTH_THRESHOLD)

    def from_plain(self, plain, *, dtype=torch.float64):
        return torch.tensor(float(bool(plain)), dtype=dtype)

    def sample(self, generator, batch, *, hard, dtype=torch.float64):
        if hard:
            return torch.randint(0, 2, (batch,), generator=generator).to(dtype)
        return torch.rand(batch, generator=generator, dtype=dtype) * 0.8 + 0.1


Scalar = ScalarType()
Bool = BoolType()


# --------------------------------------------------------------------------------------------
# Sized types: `Vector[8]` (or `Vector(8)`) is a type; bare `Vector` is the family.


@dataclass(frozen=True)
class _Sized(ValueType):
    size: int

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise TypeError(f"{type(self).__name__}[{self.size!r}]: the size must be a positive int")

    def __class_getitem__(cls, size: int):
        return cls(size)

    @property
    def shape(self):
        return (self.size,)

    def __str__(self):
        return f"{type(self).__name__}[{self.size}]"


@dataclass(frozen=True)
class Vector(_Sized):
    """A word of `size` reals."""

    def to_plain(self, value):
        return tuple(float(x) for x in value)

    def from_plain(self, plain, *, dtype=torch.float64):
        return torch.tensor([float(x) for x in plain], dtype=dtype).reshape(self.size)

    def sample(self, generator, batch, *, hard, dtype=torch.float64):
        return ScalarType.sample(Scalar, generator, batch * self.size, hard=hard, dtype=dtype).reshape(
            batch, self.size
        )

    def plain_close(self, a, b, *, rtol=1e-6):
        return len(a) == len(b) and all(Scalar.plain_close(x, y, rtol=rtol) for x, y in zip(a, b))


@dataclass(frozen=True)
class Selection(_Sized):
    """A Neural-Programmer row selector: each of `size` rows selected with a weight in [0, 1]."""

    def check_values(self, value, *, what):
        super().check_values(value, what=what)
        _check_unit_interval(self, value, what)

    harden = BoolType.harden

    def to_plain(self, value):
        return tuple(bool(x > TRUTH_THRESHOLD) for x in value)

    def from_plain(self, plain, *, dtype=torch.float64):
        return torch.tensor([float(bool(x)) for x in plain], dtype=dtype).reshape(self.size)

    def sample(self, generator, batch, *, hard, dtype=torch.float64):
        return BoolType.sample(Bool, generator, batch * self.size, hard=hard, dtype=dtype).reshape(
            batch, self.size
        )


@dataclass(frozen=True)
class _Simplex(_Sized):
    """A distribution over `size` choices; hard form the argmax (ties: the lowest index)."""

    def check_values(self, value, *, what):
        super().check_values(value, what=what)
        if (value < 0).any() or not torch.allclose(
            value.sum(-1), torch.ones((), dtype=value.dtype), atol=SIMPLEX_ATOL
        ):
            raise ValueError(f"{what}: {self} value is not a distribution (negative or sum ≠ 1)")

    def initial(self, batch, *, device=None, dtype=torch.float32):
        """All mass on index 0: the hard form of an unwritten register is 0."""
        out = torch.zeros(batch, self.size, device=device, dtype=dtype)
        out[:, 0] = 1
        return out

    def harden(self, value):
        return torch.nn.functional.one_hot(value.argmax(-1), self.size).to(value.dtype)

    def to_plain(self, value):
        return int(value.argmax())

    def from_plain(self, plain, *, dtype=torch.float64):
        if isinstance(plain, bool) or not isinstance(plain, int) or not 0 <= plain < self.size:
            raise ValueError(f"{self}: plain value must be an int in [0, {self.size}), got {plain!r}")
        return torch.nn.functional.one_hot(torch.tensor(plain), self.size).to(dtype)

    def sample(self, generator, batch, *, hard, dtype=torch.float64):
        if hard:
            index = torch.randint(0, self.size, (batch,), generator=generator)
            return torch.nn.functional.one_hot(index, self.size).to(dtype)
        return torch.softmax(torch.randn(batch, self.size, generator=generator, dtype=dtype), -1)

    def distance(self, a, b):
        return 0.5 * (a - b).abs().sum(-1)  # total variation


@dataclass(frozen=True)
class Pointer(_Simplex):
    """A soft address over `size` locations (an NRAM register, a pointer-network reference)."""


@dataclass(frozen=True)
class Categorical(_Simplex):
    """A symbol out of `size`."""


def _check_unit_interval(t: ValueType, value: torch.Tensor, what: str) -> None:
    if (value < 0).any() or (value > 1).any():
        raise ValueError(f"{what}: {t} values must lie in [0, 1]")


_SIZED = {cls.__name__: cls for cls in (Vector, Selection, Pointer, Categorical)}
_UNSIZED = {"Scalar": Scalar, "Bool": Bool}
_TYPE_TEXT = re.compile(r"^\s*(\w+)\s*(?:\[\s*(\d+)\s*\])?\s*$")


def parse_type(text: str) -> ValueType:
    """The type written as `str(t)` ("Scalar", "Pointer[8]"), e.g. in program JSON."""
    match = _TYPE_TEXT.match(text) if isinstance(text, str) else None
    name, size = match.groups() if match else (None, None)
    if name in _UNSIZED and size is None:
        return _UNSIZED[name]
    if name in _SIZED and size is not None:
        return _SIZED[name](int(size))
    known = ", ".join([*_UNSIZED, *(f"{n}[N]" for n in _SIZED)])
    raise ValueError(f"unknown value type {text!r}; known types: {known}")
