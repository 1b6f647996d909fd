"""What the kernel tests share: outputs and gradients of an op on fresh copies of its inputs."""

from __future__ import annotations

import torch


def outputs_and_gradients(fn, inputs, seed=0):
    """`fn`'s output(s) on fresh leaf copies of `inputs` (None stays None, and gets no gradient),
    and every input's gradient of a seeded random projection of the output(s).

    Returns:
        (output, gradients) where `output` is a tensor when `fn` returns one, else a list.
    """
    leaves = [None if x is None else x.clone().requires_grad_() for x in inputs]
    result = fn(*leaves)
    several = isinstance(result, (tuple, list))
    outputs = list(result) if several else [result]
    gen = torch.Generator().manual_seed(seed)
    sum((y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() for y in outputs).backward()
    detached = [y.detach() for y in outputs]
    return (detached if several else detached[0]), [x.grad for x in leaves if x is not None]
