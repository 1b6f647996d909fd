"""Time the DNC step's kernels on a GPU: the fused linkage step and content addressing, forward
and backward, at N = 1024 and 4096 slots, batch 64, against the PyTorch references.

For each kernel and size, in the same run (`triton.testing.do_bench`, medians in ms):

- eager:     the plain-PyTorch reference differentiated by autograd (what a device runs without
             kernels: `link_step_reference`, `content_weights_reference`);
- eager op:  the custom op on its reference path (`impl="reference"`: hand-written backward that
             saves only the step's inputs);
- compiled:  `torch.compile` of the plain reference (inductor);
- triton:    the custom op on its Triton path (`impl="triton"`).

Each time comes with the bandwidth it achieves on the bytes a step must move at least (the
linkage step: read L_{t−1} and write L_t forward, read ∂ℓ/∂L_t and L_{t−1} and write ∂ℓ/∂L_{t−1}
backward, 5·B·N² elements; content addressing: read M forward, read M and write ∂ℓ/∂M backward,
plus the (B, H, N) weightings and their gradients), as a fraction of the device-to-device copy
bandwidth measured in the same run, and with the peak memory the step allocates.

    python benchmarks/kernels_gpu.py                      # N = 1024 and 4096, batch 64, R = 4, W = 64
    python benchmarks/kernels_gpu.py --sizes 1024 --heads 1 --dtype float64

It needs a CUDA GPU and Triton; without them it says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import NamedTuple

import torch

from diffvm.interp.kernels import content_weights, content_weights_reference, link_step_reference, linkage_step

SIZES = (1024, 4096)
BATCH = 64
HEADS = 4  # read heads R; content addressing runs R + 1 heads (the reads and the write)
WIDTH = 64
COPY_BYTES = 1 << 30  # the tensor copied to measure bandwidth: far larger than any cache


class _Linkage(NamedTuple):
    """The linkage state `linkage_step` takes (as diffvm.memory.linkage.LinkageState)."""

    link: torch.Tensor
    precedence: torch.Tensor


def _linkage_inputs(batch, slots, heads, dtype, gen):
    simplex = lambda *shape: torch.softmax(torch.randn(*shape, generator=gen, device="cuda", dtype=dtype), -1)
    link = 0.01 * torch.rand(batch, slots, slots, generator=gen, device="cuda", dtype=dtype)
    return [link, 0.9 * simplex(batch, slots), 0.8 * simplex(batch, slots), simplex(batch, heads, slots)]


def _content_inputs(batch, slots, width, heads, dtype, gen):
    memory = torch.randn(batch, slots, width, generator=gen, device="cuda", dtype=dtype)
    keys = torch.randn(batch, heads, width, generator=gen, device="cuda", dtype=dtype)
    return [memory, keys, 1 + 5 * torch.rand(batch, heads, generator=gen, device="cuda", dtype=dtype)]


def _linkage_variants():
    def reference(link, w, p, r):
        new_link, forward, backward = link_step_reference(link, w, p, r)
        return new_link, forward, backward

    def op(impl):
        def run(link, w, p, r):
            state, forward, backward = linkage_step(_Linkage(link, p), w, r, impl=impl)
            return state.link, forward, backward
        return run

    return {"eager": reference, "eager op": op("reference"), "compiled": torch.compile(reference),
            "triton": op("triton")}


def _content_variants():
    return {"eager": content_weights_reference,
            "eager op": lambda *xs: content_weights(*xs, impl="reference"),
            "compiled": torch.compile(content_weights_reference),
            "triton": lambda *xs: content_weights(*xs, impl="triton")}


def _time(fn, inputs, do_bench) -> tuple[float, float]:
    """Median ms of forward + backward, and the peak memory (GB) one step allocates beyond its inputs."""
    leaves = [x.requires_grad_() for x in inputs]
    with torch.no_grad():
        grads = [torch.randn_like(y) for y in _as_tuple(fn(*leaves))]

    def step():
        torch.autograd.backward(_as_tuple(fn(*leaves)), grads)

    step()  # compile, autotune, allocator warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 1e9
    return do_bench(step, grad_to_none=leaves), peak


def _copy_bandwidth(dtype, do_bench) -> float:
    """GB/s of a device-to-device copy of `COPY_BYTES` (bytes read + bytes written per second)."""
    src = torch.empty(COPY_BYTES // (torch.finfo(dtype).bits // 8), device="cuda", dtype=dtype)
    dst = torch.empty_like(src)
    return 2 * COPY_BYTES / do_bench(lambda: dst.copy_(src)) / 1e6


def _as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="slots N")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--heads", type=int, default=HEADS, help="read heads R")
    parser.add_argument("--width", type=int, default=WIDTH, help="word width W")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernels_gpu.py: no CUDA GPU (torch.cuda.is_available() is False); this benchmark times Triton "
                 "kernels on a GPU and measures nothing on CPU. The CPU numbers are benchmarks/memory_step.py's.")
    try:
        from triton.testing import do_bench
    except ImportError:
        sys.exit("kernels_gpu.py: Triton is not installed (pip install 'diffvm[kernels]')")

    dtype = getattr(torch, args.dtype)
    size = torch.finfo(dtype).bits // 8
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {args.dtype}, batch {args.batch}, "
          f"R = {args.heads}, W = {args.width}; forward + backward, median of triton.testing.do_bench")
    copy_gbs = _copy_bandwidth(dtype, do_bench)
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s")

    gen = torch.Generator(device="cuda").manual_seed(0)
    b, r, w = args.batch, args.heads, args.width
    for n in args.sizes:
        kernels = {
            "linkage": (_linkage_variants(), _linkage_inputs(b, n, r, dtype, gen),
                        (5 * b * n * n + 8 * b * r * n) * size),
            "content": (_content_variants(), _content_inputs(b, n, w, r + 1, dtype, gen),
                        (3 * b * n * w + 3 * b * (r + 1) * n) * size),
        }
        for name, (variants, inputs, least_bytes) in kernels.items():  # the same inputs for every variant
            base_ms = None
            for variant, fn in variants.items():
                try:
                    ms, peak = _time(fn, inputs, do_bench)
                except torch.OutOfMemoryError:
                    print(f"{name:>8} N={n:<5} {variant:>9}: out of memory")
                    torch.cuda.empty_cache()
                    continue
                base_ms = ms if variant == "eager" else base_ms
                gbs = least_bytes / ms / 1e6
                ratio = f"{base_ms / ms:5.1f}x eager" if base_ms else "  (no eager)"
                print(f"{name:>8} N={n:<5} {variant:>9}: {ms:8.3f} ms  {ratio}  "
                      f"{gbs:6.0f} GB/s = {gbs / copy_gbs:4.0%} of copy  peak {peak:6.2f} GB", flush=True)
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
