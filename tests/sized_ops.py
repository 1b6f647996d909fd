"""Ops over the sized types, registered by the tests the way a user registers ops, so that
`check_op` and the soft = hard property cover every value type."""

import torch

from diffvm.interp import Pointer, Scalar, Selection, Vector, primitive

N = 5


@primitive("testing::ptr_inc", inputs=(Pointer[N],), output=Pointer[N])
def ptr_inc(p):
    return torch.roll(p, 1, dims=-1)  # the mass at i moves to i + 1 (mod N)


@primitive("testing::ptr_read", inputs=(Pointer[N], Vector[N]), output=Scalar)
def ptr_read(p, v):
    return (p * v).sum(-1)


@primitive("testing::vec_scale", inputs=(Vector[N], Scalar), output=Vector[N])
def vec_scale(v, s):
    return v * s.unsqueeze(-1)


@primitive("testing::sel_and", inputs=(Selection[N], Selection[N]), output=Selection[N])
def sel_and(p, q):
    return p * q


@primitive("testing::sel_count", inputs=(Selection[N],), output=Scalar)
def sel_count(p):
    return p.sum(-1)
