"""What every kernel shares: choosing between the PyTorch reference and the Triton kernel, and the
buffers a Triton launch writes into.

`impl` is one of `IMPLEMENTATIONS`:

- "auto": the Triton kernel where the tensors are on a CUDA device and Triton is installed;
  everywhere else the reference function under plain autograd (`eager_reference`), for ops that
  offer it: on a CPU the op's recomputing backward costs more time (20–40 % of a small NTM or
  stack step) than autograd's stored intermediates cost memory;
- "reference": always the plain-PyTorch implementation, through the op with its hand-written
  backward that recomputes from the inputs (the least memory a BPTT can keep);
- "triton": always the Triton kernel; raises where it cannot run (Triton missing, or CPU tensors
  without Triton's interpreter, `TRITON_INTERPRET=1`, which runs kernels on CPU tensors at a
  crawl: the test suite's way to check the kernels on a machine without a GPU).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import torch

__all__ = ["FLOAT_DTYPES", "IMPLEMENTATIONS", "POISON_BUFFERS", "check_floats", "eager_reference", "empty",
           "launch_device", "use_triton"]

IMPLEMENTATIONS = ("auto", "reference", "triton")
# The dtypes the kernels accumulate in without loss: weightings are probabilities whose sums
# over thousands of slots half precision would round away.
FLOAT_DTYPES = (torch.float32, torch.float64)
# Read once, at import, so that `torch.compile` sees constants rather than an environment lookup.
# The interpreter must be chosen before the first `triton.jit` runs, as tests/conftest.py does.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# Tests set this: every buffer a Triton launch fills is then allocated full of NaN, so that an
# element a kernel forgets to write fails the comparison instead of passing on leftover memory.
POISON_BUFFERS = False


def use_triton(impl: str, op: str, *tensors: torch.Tensor) -> bool:
    """Whether op `op` runs its Triton kernel on `tensors` under `impl` (module docstring).

    Raises:
        ValueError: `impl` is not one of `IMPLEMENTATIONS`.
        RuntimeError: `impl` is "triton" and the kernel cannot run on these tensors.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"{op}: impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    if impl == "reference":
        return False
    on_cuda = all(t.is_cuda for t in tensors)
    if impl == "auto":
        return _TRITON_INSTALLED and on_cuda
    if not _TRITON_INSTALLED:
        raise RuntimeError(f"{op}: impl='triton' needs the triton package (pip install 'diffvm[kernels]')")
    if not (on_cuda or _TRITON_INTERPRET):
        devices = sorted({str(t.device) for t in tensors})
        raise RuntimeError(f"{op}: impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before import), "
                           f"got tensors on {devices}")
    return True


def eager_reference(impl: str, *tensors: torch.Tensor) -> bool:
    """Whether an op under `impl` should call its reference function directly, autograd
    differentiating it (module docstring): "auto" where the Triton kernel would not run."""
    return impl == "auto" and not (_TRITON_INSTALLED and all(t.is_cuda for t in tensors))


def check_floats(op: str, **tensors: torch.Tensor) -> None:
    """Raise unless every tensor is float32 or float64, all of one dtype and on one device."""
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if any(d not in FLOAT_DTYPES for d in dtypes.values()) or len(set(dtypes.values())) > 1:
        raise TypeError(f"{op}: expected float32 or float64 tensors of one dtype, got {dtypes}")
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        raise ValueError(f"{op}: expected tensors on one device, got {sorted(map(str, devices))}")


def empty(*shape: int, like: torch.Tensor) -> torch.Tensor:
    """A buffer for a kernel to fill, with `like`'s dtype and device (NaN under `POISON_BUFFERS`)."""
    if POISON_BUFFERS:
        return torch.full(shape, float("nan"), dtype=like.dtype, device=like.device)
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def launch_device(tensor: torch.Tensor):
    """A context in which a Triton launch targets `tensor`'s GPU (Triton launches on the current one)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()
