"""Test-wide settings: one torch thread (two make small ops ~100x slower on CI's machine), and
Triton's CPU interpreter for kernel tests (it must be set before any kernel module is imported)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
