"""`check_op`: the public checker every registered op passes (the suite runs it over all of them)."""

from __future__ import annotations

import torch

from diffvm.interp.registry import Op

__all__ = ["OpCheckError", "check_op"]

# float64 agreement tolerance for exact ops (batched vs one-at-a-time, hard vs soft).
CHECK_ATOL = 1e-9


class OpCheckError(AssertionError):
    """An op failed one of `check_op`'s checks; the message names the op and the check."""


def check_op(op: Op, *, batch: int = 7, seed: int = 0) -> None:
    """Check an op's contract; raise `OpCheckError` naming the first failure.

    1. shapes: the soft meaning maps (B, *in_shape)... to (B, *out_shape) in float64 and float32,
       keeping the dtype, with values in the output type's domain;
    2. batch independence: the batched result equals each example computed alone;
    3. gradients: float64 `torch.autograd.gradcheck` of the soft meaning at interior inputs;
    4. soft-to-hard agreement: on hard-valued inputs (what one-hot instructions feed an op), the
       soft result in its type's hard form equals the hard meaning, batched and per example on
       plain values (the hard interpreter's path).
    """
    g = torch.Generator().manual_seed(seed)

    def fail(check: str, detail: str) -> OpCheckError:
        return OpCheckError(f"check_op({op.name!r}) failed {check}: {detail}")

    soft_inputs = [t.sample(g, batch, hard=False) for t in op.inputs]
    hard_inputs = [t.sample(g, batch, hard=True) for t in op.inputs]

    # 1. shapes, dtypes, domain
    for dtype in (torch.float64, torch.float32):
        args = [x.to(dtype) for x in soft_inputs]
        try:
            out = op(*args)
        except TypeError as e:
            raise fail("shapes", str(e)) from None
        if out.dtype != dtype:
            raise fail("shapes", f"result dtype {out.dtype} for {dtype} inputs")
        try:
            op.output.check_values(out, what="soft result")
        except ValueError as e:
            raise fail("output domain", str(e)) from None

    # 2. batch independence
    out = op(*soft_inputs)
    for i in range(batch):
        alone = op(*[x[i : i + 1] for x in soft_inputs])[0]
        if not torch.allclose(alone, out[i], atol=CHECK_ATOL, rtol=CHECK_ATOL):
            raise fail("batch independence", f"example {i}: alone {alone}, in batch {out[i]}")

    # 3. gradients
    leaves = [x.clone().requires_grad_(True) for x in soft_inputs]
    try:
        torch.autograd.gradcheck(op.soft, tuple(leaves), eps=1e-6, atol=1e-5, rtol=1e-4)
    except Exception as e:  # gradcheck raises GradcheckError or RuntimeError from the op
        raise fail("float64 gradcheck", str(e).splitlines()[0]) from None

    # 4. soft-to-hard agreement on hard-valued inputs
    soft_hard = op.output.harden(op(*hard_inputs))
    hard = op.hard_batch(*hard_inputs)
    bad = op.output.distance(soft_hard, hard) > CHECK_ATOL
    if bad.any():
        i = int(bad.nonzero()[0])
        args = [t.to_plain(x[i]) for t, x in zip(op.inputs, hard_inputs)]
        raise fail("soft-to-hard agreement",
                   f"at {args}: soft gives {op.output.to_plain(soft_hard[i])}, "
                   f"hard gives {op.output.to_plain(hard[i])}")
    for i in range(batch):
        plain_args = [t.to_plain(x[i]) for t, x in zip(op.inputs, hard_inputs)]
        plain = op.hard(*plain_args)
        expected = op.output.to_plain(hard[i])
        if not op.output.plain_close(plain, expected):
            raise fail("plain hard meaning", f"at {plain_args}: {plain!r}, batched {expected!r}")
