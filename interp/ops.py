"""The starter op library: arithmetic, comparison, logic and selection over scalars.

Arithmetic is exact (the soft meaning is the hard one). Comparisons are smooth surrogates: the
logistic σ(x − y) of the difference, whose hard form (`Bool`: > 0.5) is exactly x > y. Logic
ops are the product-algebra connectives, exact on hard truth values.
"""

from __future__ import annotations

import torch

from diffvm.interp.registry import primitive
from diffvm.interp.types import Bool, Scalar

__all__ = ["add", "sub", "mul", "neg", "maximum", "minimum", "greater", "less",
           "logic_and", "logic_or", "logic_not", "where"]

_S2 = (Scalar, Scalar)


@primitive("arith::add", inputs=_S2, output=Scalar)
def add(a, b):
    return a + b


@primitive("arith::sub", inputs=_S2, output=Scalar)
def sub(a, b):
    return a - b


@primitive("arith::mul", inputs=_S2, output=Scalar)
def mul(a, b):
    return a * b


@primitive("arith::neg", inputs=(Scalar,), output=Scalar)
def neg(a):
    return -a


@primitive("sel::max", inputs=_S2, output=Scalar)
def maximum(a, b):
    return torch.maximum(a, b)


@primitive("sel::min", inputs=_S2, output=Scalar)
def minimum(a, b):
    return torch.minimum(a, b)


@primitive("cmp::greater", inputs=_S2, output=Bool, hard=lambda a, b: (a > b).to(a.dtype))
def greater(a, b):
    return torch.sigmoid(a - b)


@primitive("cmp::less", inputs=_S2, output=Bool, hard=lambda a, b: (a < b).to(a.dtype))
def less(a, b):
    return torch.sigmoid(b - a)


@primitive("logic::and", inputs=(Bool, Bool), output=Bool)
def logic_and(p, q):
    return p * q


@primitive("logic::or", inputs=(Bool, Bool), output=Bool)
def logic_or(p, q):
    return p + q - p * q


@primitive("logic::not", inputs=(Bool,), output=Bool)
def logic_not(p):
    return 1 - p


@primitive("sel::where", inputs=(Bool, Scalar, Scalar), output=Scalar)
def where(c, a, b):
    """`a if c else b`; soft: the mixture c·a + (1 − c)·b."""
    return c * a + (1 - c) * b
