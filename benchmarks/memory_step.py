"""Time one training step of every memory device on the copy task, beside the `dnc` package.

The step: a 41-step copy episode (20 random 8-bit vectors, a delimiter, 20 answer steps), batch 32,
an LSTM-100 controller that reads the device's previous read every step, forward, sigmoid
cross-entropy on the answer half, backward, Adam. Devices use words of width 20 and N slots.
In the same run the same configuration of the PyPI `dnc` package (ixaxaar/pytorch-dnc, the
PyTorch DNC people use: `pip install --no-deps dnc`; its optional `flann` dependency is for its
sparse variants only) is timed, and each diffvm time is printed as a ratio to it.

Every configuration runs in a fresh subprocess so that its peak memory (the process's maximum
resident set, less what the process held before building the model) is its own.

    python benchmarks/memory_step.py                      # everything (the N = 1024 package step
                                                          # takes about a minute and 12.5 GB)
    python benchmarks/memory_step.py --sizes 64 128 --devices dnc ntm --reps 5
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

import torch  # noqa: E402
from torch import nn  # noqa: E402

from diffvm.memory import DNCMemory, NeuralQueue, NeuralStack, NTMMemory, StackRNNStacks  # noqa: E402

BATCH = 32
BITS = 8
LENGTH = 20  # 20 inputs + delimiter + 20 answers = 41 steps
WIDTH = 20
HIDDEN = 100
CLIP = 20.0  # controller outputs clipped to ±20, as the DNC package and Collier & Beel do
SIZES = (64, 128, 256, 1024)

# name -> (factory of the device with N slots, whether it depends on N)
DEVICES = {
    "ntm": (lambda n: NTMMemory(n, WIDTH), True),
    "dnc": (lambda n: DNCMemory(n, WIDTH), True),
    "dnc-r4": (lambda n: DNCMemory(n, WIDTH, read_heads=4), True),
    "stack": (lambda n: NeuralStack(2 * LENGTH + 1, WIDTH), False),  # capacity: one row per step
    "queue": (lambda n: NeuralQueue(2 * LENGTH + 1, WIDTH), False),
    "stack-rnn": (lambda n: StackRNNStacks(stacks=2, depth=2 * LENGTH + 1, width=WIDTH), False),
}
PACKAGE = {"dnc": 1, "dnc-r4": 4}  # our device -> read heads of the package configuration it is compared with


class CopyModel(nn.Module):
    """LSTM controller + device: the controller sees the input and the device's previous read."""

    def __init__(self, device):
        super().__init__()
        self.device = device
        self.cell = nn.LSTMCell(BITS + 1 + device.read_size, HIDDEN)
        self.interface = nn.Linear(HIDDEN, device.interface_size)
        self.out = nn.Linear(HIDDEN + device.read_size, BITS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, BITS + 1) batch-first; returns logits (B, T, BITS)."""
        batch = x.shape[0]
        h = c = x.new_zeros(batch, HIDDEN)
        read = x.new_zeros(batch, self.device.read_size)
        state = self.device.initial_state(batch, dtype=x.dtype)
        outputs = []
        for t in range(x.shape[1]):
            h, c = self.cell(torch.cat([x[:, t], read], -1), (h, c))
            raw = self.interface(h).clamp(-CLIP, CLIP)
            read, state = self.device(self.device.interface_from_raw(raw), state)
            outputs.append(self.out(torch.cat([h, read], -1)))
        return torch.stack(outputs, 1)  # (B, T, BITS)


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
    """Runs in the child: build, warm up once, time `reps` steps; returns medians and memory."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = PackageModel(slots, PACKAGE[device]) if impl == "dnc-package" else CopyModel(DEVICES[device][0](slots))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        x, target = copy_episode(gen)
        loss = loss_fn(model(x)[:, LENGTH + 1:], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()  # warm-up (allocator, Adam state)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"impl": impl, "device": device, "N": slots, "median_s": statistics.median(times),
            "reps": reps, "peak_mb": peak_kb / 1024, "model_mb": (peak_kb - base_kb) / 1024,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--devices", nargs="+", default=list(DEVICES), choices=list(DEVICES))
    parser.add_argument("--reps", type=int, default=5, help="timed steps per configuration (median)")
    parser.add_argument("--package-reps", type=int, default=3, help="timed steps of the dnc package")
    parser.add_argument("--no-package", action="store_true", help="skip the dnc package")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", nargs=4, metavar=("IMPL", "DEVICE", "N", "REPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, device, slots, reps = args.child
        print(json.dumps(measure(impl, device, int(slots), int(reps))))
        return

    print(f"torch {torch.__version__}, one thread (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), "
          f"batch {BATCH}, {2 * LENGTH + 1}-step copy episode, width {WIDTH}, LSTM-{HIDDEN}")
    runs = []
    for device in args.devices:
        sizes = args.sizes if DEVICES[device][1] else args.sizes[:1]
        for slots in sizes:
            jobs = [("diffvm", args.reps)]
            if device in PACKAGE and not args.no_package:
                jobs.append(("dnc-package", args.package_reps))
            for impl, reps in jobs:
                child = subprocess.run([sys.executable, __file__, "--child", impl, device, str(slots), str(reps)],
                                       capture_output=True, text=True)
                if child.returncode != 0:
                    print(f"{impl} {device} N={slots}: failed\n{child.stderr[-2000:]}")
                    continue
                runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
                r = runs[-1]
                print(f"{r['impl']:>12} {device:>9} N={slots:<5} {r['median_s'] * 1e3:9.1f} ms/step  "
                      f"peak {r['peak_mb']:8.0f} MB (model {r['model_mb']:7.0f} MB)  threads {r['threads']}",
                      flush=True)
            ours = [r for r in runs if r["device"] == device and r["N"] == slots]
            if len(ours) == 2:
                a, b = ours
                print(f"{'':>12} {'ratio':>9} N={slots:<5} package/diffvm time {b['median_s'] / a['median_s']:.1f}x, "
                      f"memory {b['model_mb'] / max(a['model_mb'], 1):.1f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
