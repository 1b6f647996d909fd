"""The arithmetic family: learn f(a, b, c) from input/output pairs alone (the Neural Programmer toy).

Each function needs two chained steps, the second reading the first's result. Inputs are
integers: uniform in [−scale, scale] in training, and of magnitude in (scale, 10·scale] (larger
than any seen in training) for the held-out test of generalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from diffvm.interp import Machine, OpSet, Scalar
from diffvm.programs import Program, run

__all__ = ["ArithmeticFunction", "ArithmeticTask", "FAMILY"]

# Relative tolerance of an exact match: discretised programs compute integers exactly.
EXACT_RTOL = 1e-6
DEFAULT_OPS = ("arith::add", "arith::sub", "arith::mul")


@dataclass(frozen=True)
class ArithmeticFunction:
    """A target function of the inputs a, b, c; `depth` is the fewest ops that compute it."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    depth: int


FAMILY: dict[str, ArithmeticFunction] = {
    f.name: f
    for f in (
        ArithmeticFunction("(a+b)*c", lambda a, b, c: (a + b) * c, 2),
        ArithmeticFunction("a-b+c", lambda a, b, c: a - b + c, 2),
        ArithmeticFunction("a*b-c", lambda a, b, c: a * b - c, 2),
        ArithmeticFunction("(a-c)*b", lambda a, b, c: (a - c) * b, 2),
    )
}


class ArithmeticTask:
    """Samples of one function of the family.

    Args:
        function: a key of `FAMILY`, e.g. "(a+b)*c".
        scale: training inputs are integers uniform in [−scale, scale].
        heldout_factor: held-out inputs have magnitude in (scale, heldout_factor·scale].
    """

    input_names = ("a", "b", "c")

    # --- what `diffvm.controllers.induce` asks of a task -------------------------------------
    @classmethod
    def machine(cls, opset: OpSet | None = None) -> Machine:
        """Scalar inputs a, b, c and a Scalar result, over add/sub/mul unless `opset` says otherwise."""
        return Machine(opset or OpSet(list(DEFAULT_OPS)), {n: Scalar for n in cls.input_names}, Scalar)

    def examples(self, rng: np.random.Generator, batch: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Training examples: `sample` without held-out magnitudes."""
        return self.sample(rng, batch)

    def exact(self, program: Program, examples: tuple[dict[str, np.ndarray], np.ndarray]) -> float:
        """The fraction of examples the hard interpreter answers exactly."""
        inputs, target = examples
        answers = [run(program, {n: float(v[i]) for n, v in inputs.items()}) for i in range(len(target))]
        return float(self.exact_match(np.array(answers), target).mean())

    def soft_fit(self, machine: Machine, instructions, examples) -> torch.Tensor:
        """Huber loss of the soft machine's answer on `examples`."""
        inputs, target = examples
        out, _ = machine.run(instructions, {n: torch.as_tensor(v, dtype=torch.float32) for n, v in inputs.items()})
        return F.smooth_l1_loss(out, torch.as_tensor(target, dtype=out.dtype))

    def __init__(self, function: str, *, scale: int = 10, heldout_factor: int = 10):
        if function not in FAMILY:
            raise ValueError(f"unknown arithmetic function {function!r}; known: {', '.join(FAMILY)}")
        if scale < 1 or heldout_factor < 2:
            raise ValueError(f"need scale ≥ 1 and heldout_factor ≥ 2, got {scale}, {heldout_factor}")
        self.function = FAMILY[function]
        self.scale = scale
        self.heldout_factor = heldout_factor

    @property
    def name(self) -> str:
        return self.function.name

    def sample(
        self, rng: np.random.Generator, batch: int, *, heldout: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """A batch: inputs name -> (B,) float64 integers, and the targets (B,)."""
        if heldout:
            magnitude = rng.integers(self.scale + 1, self.heldout_factor * self.scale + 1, (3, batch))
            values = magnitude * rng.choice([-1, 1], (3, batch))
        else:
            values = rng.integers(-self.scale, self.scale + 1, (3, batch))
        inputs = dict(zip(self.input_names, values.astype(np.float64)))
        return inputs, self.function.fn(*inputs.values())

    @staticmethod
    def exact_match(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(B,) bool: the answer equals the target (up to float round-off)."""
        pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
        return np.abs(pred - target) <= EXACT_RTOL * np.maximum(1.0, np.abs(target))

    @staticmethod
    def rounded_match(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(B,) bool: the answer rounds to the (integer) target; the soft model's accuracy."""
        return np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64)) < 0.5
