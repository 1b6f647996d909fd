"""Time a plain LSTM model's training step: the fused path (`torch.lstm` over the whole sequence)
against the ponder-step loop it replaces, in the same run, with the same weights and inputs.

The default shape is the Learning-to-Execute baseline as `diffvm train l2e --batch 100` trains it
(2-layer LSTM-128, 43 inputs, 42 classes) on sequences of 57 steps, the mean length of programs
at (4, 3). A step is forward, the loss and backward; the figure is the median of `--repeats`
timed steps after two warm-up steps.

    OMP_NUM_THREADS=1 python benchmarks/lstm_fast_path.py
    python benchmarks/lstm_fast_path.py --batch 32 --steps 20 --layers 1 --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch

from diffvm.controllers.model import MemoryModel, ModelConfig


def _time_step(model: MemoryModel, x: torch.Tensor, target: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + cross-entropy + backward."""
    times = []
    for i in range(repeats + 2):
        if x.is_cuda:
            torch.cuda.synchronize()
        began = time.perf_counter()
        logits = model(x).logits  # (B, T, O)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
        model.zero_grad(set_to_none=True)
        loss.backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=57)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=43)
    parser.add_argument("--classes", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MemoryModel(ModelConfig(hidden=args.hidden, layers=args.layers), args.inputs, args.classes).to(device)
    x = torch.randn(args.batch, args.steps, args.inputs, device=device)
    target = torch.randint(args.classes, (args.batch, args.steps), device=device)
    print(f"{datetime.date.today()}  device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"batch {args.batch}, {args.steps} steps, {args.layers} x LSTM-{args.hidden}")
    assert model.fused
    fused = _time_step(model, x, target, args.repeats)
    model.fused = False
    loop = _time_step(model, x, target, args.repeats)
    print(f"step loop {1e3 * loop:8.2f} ms\nfused     {1e3 * fused:8.2f} ms\nspeed-up  {loop / fused:8.2f}x")


if __name__ == "__main__":
    main()
