"""Time one training step of every memory device on the copy task, beside the `dnc` package.

The step: a 41-step copy episode (20 random 8-bit vectors, a delimiter, 20 answer steps), batch 32,
an LSTM-100 controller that reads the device's previous read every step, forward, sigmoid
cross-entropy on the answer half, backward, Adam. Devices use words of width 20 and N slots.
In the same run the same configuration of the PyPI `dnc` package (ixaxaar/pytorch-dnc, the
PyTorch DNC people use: `pip install --no-deps dnc`; its optional `flann` dependency is for its
sparse variants only) is timed, and each diffvm time is printed as a ratio to it: every DNC
variant (dense, sparse links, checkpointed) is compared with the package's dense DNC with as many
read heads, measured once per size.

Variants of the diffvm model (`--compile`, and the devices' names):
- eager: the model as written, one Python step per time step;
- compiled (`--compile`): the per-time-step function (controller, device, output layer) through
  `torch.compile` (Inductor's C++ backend on CPU; custom ops such as `diffvm::link_step` stay
  opaque calls); the warm-up step, which compiles, is timed and printed separately;
- `dnc-sparse`: `DNCMemory(link_top_k=8)`, the paper's sparse link matrix;
- `dnc-ckpt`: the dense DNC with the episode cut into segments of `CHECKPOINT_SEGMENT` steps, each
  run under `torch.utils.checkpoint`: BPTT keeps one link matrix per segment and recomputes the
  segment's forward inside the backward.

Every configuration runs in a fresh subprocess so that its peak memory (the process's maximum
resident set, less what the process held before building the model) is its own. Times are
wall-clock medians; the CPU time of the same steps (`time.process_time`) is printed beside them,
because the machine is shared and other processes stretch wall time more than CPU time.

    python benchmarks/memory_step.py                      # everything (the N = 1024 package step
                                                          # takes about a minute and 12.5 GB)
    python benchmarks/memory_step.py --sizes 64 128 --devices dnc ntm --reps 5 --compile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # compile in this process: its memory is counted

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

from diffvm.memory import DNCMemory, NeuralQueue, NeuralStack, NTMMemory, StackRNNStacks  # noqa: E402

BATCH = 32
BITS = 8
LENGTH = 20  # 20 inputs + delimiter + 20 answers = 41 steps
WIDTH = 20
HIDDEN = 100
CLIP = 20.0  # controller outputs clipped to ±20, as the DNC package and Collier & Beel do
SIZES = (64, 128, 256, 1024)
LINK_TOP_K = 8  # the sparse link matrix's K, as in Graves et al. 2016 (Methods)
# Steps per checkpointed segment: about √T for T = 41 steps, which keeps the fewest link matrices
# (T / k at the segment starts plus k inside the segment being recomputed).
CHECKPOINT_SEGMENT = 6

# name -> (factory of the device with N slots, whether it depends on N, steps per checkpointed segment or 0)
DEVICES = {
    "ntm": (lambda n: NTMMemory(n, WIDTH), True, 0),
    "dnc": (lambda n: DNCMemory(n, WIDTH), True, 0),
    "dnc-sparse": (lambda n: DNCMemory(n, WIDTH, link_top_k=LINK_TOP_K), True, 0),
    "dnc-ckpt": (lambda n: DNCMemory(n, WIDTH), True, CHECKPOINT_SEGMENT),
    "dnc-r4": (lambda n: DNCMemory(n, WIDTH, read_heads=4), True, 0),
    "stack": (lambda n: NeuralStack(2 * LENGTH + 1, WIDTH), False, 0),  # capacity: one row per step
    "queue": (lambda n: NeuralQueue(2 * LENGTH + 1, WIDTH), False, 0),
    "stack-rnn": (lambda n: StackRNNStacks(stacks=2, depth=2 * LENGTH + 1, width=WIDTH), False, 0),
}
# our device -> read heads of the package configuration it is compared with (the package's dense DNC)
PACKAGE = {"dnc": 1, "dnc-sparse": 1, "dnc-ckpt": 1, "dnc-r4": 4}


class CopyModel(nn.Module):
    """LSTM controller + device: the controller sees the input and the device's previous read."""

    def __init__(self, device, *, compile: bool = False, segment: int = 0):
        super().__init__()
        self.device = device
        self.cell = nn.LSTMCell(BITS + 1 + device.read_size, HIDDEN)
        self.interface = nn.Linear(HIDDEN, device.interface_size)
        self.out = nn.Linear(HIDDEN + device.read_size, BITS)
        self.step = torch.compile(self._step) if compile else self._step
        self.segment = segment

    def _step(self, x_t, h, c, read, state):
        """One time step: x_t (B, BITS + 1) -> logits (B, BITS) and the new h, c, read, state."""
        h, c = self.cell(torch.cat([x_t, read], -1), (h, c))
        raw = self.interface(h).clamp(-CLIP, CLIP)
        read, state = self.device(self.device.interface_from_raw(raw), state)
        return self.out(torch.cat([h, read], -1)), h, c, read, state

    def _steps(self, x, h, c, read, state):
        """The steps of x (B, T', BITS + 1): logits (B, T', BITS) and the carry after them."""
        outputs = []
        for t in range(x.shape[1]):
            out, h, c, read, state = self.step(x[:, t], h, c, read, state)
            outputs.append(out)
        return torch.stack(outputs, 1), h, c, read, state  # (B, T', BITS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, BITS + 1) batch-first; returns logits (B, T, BITS)."""
        batch = x.shape[0]
        h = c = x.new_zeros(batch, HIDDEN)
        read = x.new_zeros(batch, self.device.read_size)
        carry = (h, c, read, self.device.initial_state(batch, dtype=x.dtype))
        if not self.segment:
            return self._steps(x, *carry)[0]
        outputs = []
        for start in range(0, x.shape[1], self.segment):  # BPTT stores each segment's inputs only
            out, *carry = checkpoint(self._steps, x[:, start:start + self.segment], *carry, use_reentrant=False)
            outputs.append(out)
        return torch.cat(outputs, 1)  # (B, T, BITS)


class PackageModel(nn.Module):
    """The `dnc` package's DNC with the same controller, memory and episode."""

    def __init__(self, slots: int, read_heads: int):
        super().__init__()
        from dnc import DNC

        self.dnc = DNC(input_size=BITS + 1, hidden_size=HIDDEN, rnn_type="lstm", num_layers=1,
                       num_hidden_layers=1, nr_cells=slots, cell_size=WIDTH, read_heads=read_heads,
                       batch_first=True, gpu_id=-1, clip=CLIP)

    def forward(self, x):
        out, _ = self.dnc(x, (None, None, None), reset_experience=True)
        return out[..., :BITS]  # (B, T, BITS): its output layer is input-sized


def copy_episode(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    bits = torch.randint(0, 2, (BATCH, LENGTH, BITS), generator=gen).float()
    x = torch.zeros(BATCH, 2 * LENGTH + 1, BITS + 1)
    x[:, :LENGTH, :BITS] = bits
    x[:, LENGTH, BITS] = 1.0  # delimiter
    return x, bits


def measure(impl: str, device: str, slots: int, reps: int) -> dict:
    """Runs in the child: build, warm up once, time `reps` steps; returns medians and memory.
    `impl`: "diffvm", "diffvm-compile" or "dnc-package"."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if impl == "dnc-package":
        model = PackageModel(slots, PACKAGE[device])
    else:
        factory, _, segment = DEVICES[device]
        model = CopyModel(factory(slots), compile=impl == "diffvm-compile", segment=segment)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        x, target = copy_episode(gen)
        loss = loss_fn(model(x)[:, LENGTH + 1:], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    start = time.perf_counter()
    step()  # warm-up (allocator, Adam state; compilation)
    warmup = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(reps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"impl": impl, "device": device, "N": slots, "median_s": statistics.median(times),
            "median_cpu_s": statistics.median(cpu_times), "warmup_s": warmup, "reps": reps,
            "peak_mb": peak_kb / 1024, "model_mb": (peak_kb - base_kb) / 1024, "threads": torch.get_num_threads()}


def _run_child(impl: str, device: str, slots: int, reps: int) -> dict | None:
    child = subprocess.run([sys.executable, __file__, "--child", impl, device, str(slots), str(reps)],
                           capture_output=True, text=True)
    if child.returncode != 0:
        print(f"{impl} {device} N={slots}: failed\n{child.stderr[-2000:]}", flush=True)
        return None
    r = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"{r['impl']:>14} {device:>10} N={slots:<5} {r['median_s'] * 1e3:9.1f} ms/step (cpu "
          f"{r['median_cpu_s'] * 1e3:9.1f} ms)  warm-up {r['warmup_s']:6.1f} s  peak {r['peak_mb']:7.0f} MB "
          f"(model {r['model_mb']:7.0f} MB)  threads {r['threads']}", flush=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--devices", nargs="+", default=list(DEVICES), choices=list(DEVICES))
    parser.add_argument("--reps", type=int, default=5, help="timed steps per configuration (median)")
    parser.add_argument("--package-reps", type=int, default=3, help="timed steps of the dnc package")
    parser.add_argument("--no-package", action="store_true", help="skip the dnc package")
    parser.add_argument("--compile", action="store_true", help="also time the diffvm models under torch.compile")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager diffvm models")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", nargs=4, metavar=("IMPL", "DEVICE", "N", "REPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, device, slots, reps = args.child
        print(json.dumps(measure(impl, device, int(slots), int(reps))))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) "
          f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), batch {BATCH}, {2 * LENGTH + 1}-step copy episode, "
          f"width {WIDTH}, LSTM-{HIDDEN}", flush=True)
    runs, package = [], {}  # package: (read heads, N) -> its measurement, taken once per run
    impls = ([] if args.no_eager else ["diffvm"]) + (["diffvm-compile"] if args.compile else [])
    for device in args.devices:
        sizes = args.sizes if DEVICES[device][1] else args.sizes[:1]
        for slots in sizes:
            if device in PACKAGE and not args.no_package and (PACKAGE[device], slots) not in package:
                package[PACKAGE[device], slots] = _run_child("dnc-package", device, slots, args.package_reps)
                runs += [package[PACKAGE[device], slots]] if package[PACKAGE[device], slots] else []
            for impl in impls:
                if impl == "diffvm-compile" and DEVICES[device][2]:
                    continue  # torch.compile inside torch.utils.checkpoint segments: not measured
                ours = _run_child(impl, device, slots, args.reps)
                reference = package.get((PACKAGE.get(device), slots))
                if ours is None:
                    continue
                runs.append(ours)
                if reference:
                    print(f"{'':>14} {'ratio':>10} N={slots:<5} package/{impl} time "
                          f"{reference['median_s'] / ours['median_s']:.1f}x (cpu "
                          f"{reference['median_cpu_s'] / ours['median_cpu_s']:.1f}x), memory "
                          f"{reference['model_mb'] / max(ours['model_mb'], 1):.1f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
