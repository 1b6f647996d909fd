"""`diffvm curves RUN [RUN ...]`: the learning curves of training runs in one PNG, and the last
figures of each run as text.

One panel per quantity, all on one shared axis of updates, one colour per run:

- training loss and training exact match (the figures logged every `--log-every` updates, each
  drawn with its moving average over `--smooth` records; the raw values faint behind it);
- the curriculum level, a step line (flat for a task without a curriculum);
- one panel per evaluation split: the soft model's accuracy (solid) and exact match (dashed), as
  logged every `--eval-every` updates.

It reads `metrics.jsonl` only, so it works on a run still training or one stopped by a kill (a
last line cut short is ignored, as `--resume` ignores it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from diffvm.controllers.trainer import METRICS_FILE, read_metrics

__all__ = ["Curves", "add_curves_parser", "curves_command", "load_curves", "moving_average", "plot_curves"]

DPI = 100
FIG_WIDTH = 10.0
PANEL_HEIGHT = 1.9
RAW_ALPHA = 0.2  # the unsmoothed training figures, drawn faintly behind their moving average


class Curves:
    """One run's records as arrays: training (update, loss, exact, level) and evaluation per split."""

    def __init__(self, name: str, records: list[dict]):
        train = [r for r in records if r["kind"] == "train"]
        self.name = name
        self.updates = np.array([r["update"] for r in train], dtype=np.int64)  # (R,)
        self.loss = np.array([r["loss"] for r in train], dtype=np.float64)  # (R,)
        self.exact = np.array([r["exact"] for r in train], dtype=np.float64)  # (R,)
        self.level = np.array([r.get("level", 0) for r in train], dtype=np.int64)  # (R,)
        self.seconds = train[-1]["seconds"] if train else 0.0
        # split -> (updates (E,), soft accuracy (E,), soft exact (E,))
        self.evals: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for split in dict.fromkeys(r["split"] for r in records if r["kind"] == "eval"):
            rows = [r for r in records if r["kind"] == "eval" and r["split"] == split]
            self.evals[split] = (np.array([r["update"] for r in rows]),
                                 np.array([r["soft"].get("accuracy", np.nan) for r in rows], dtype=np.float64),
                                 np.array([r["soft"].get("exact", np.nan) for r in rows], dtype=np.float64))

    def summary(self) -> str:
        """The run's last training record and last evaluation, one line."""
        if not len(self.updates):
            return f"{self.name}: no training records yet"
        parts = [f"{self.name}: update {self.updates[-1]}, level {self.level[-1]}, {self.seconds:.0f} s"]
        for split, (updates, accuracy, exact) in self.evals.items():
            parts.append(f"{split} {100 * accuracy[-1]:.1f}% / {100 * exact[-1]:.1f}% exact at {updates[-1]}")
        return "; ".join(parts)


def load_curves(run_dir: Path) -> Curves:
    """The curves of the run in `run_dir`; `ValueError` naming the directory when it holds no records."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        raise ValueError(f"{run_dir} is not a run directory: no {METRICS_FILE}")
    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"{run_dir / METRICS_FILE} holds no records yet")
    return Curves(str(run_dir), records)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the up to `window` − 1 before it (a trailing window, shorter at the start)."""
    if window < 1:
        raise ValueError(f"moving average window = {window}: expected ≥ 1")
    sums = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])  # (R + 1,)
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_curves(runs: list[Curves], smooth: int = 20) -> Figure:
    """The figure of the module docstring for `runs` (at least one)."""
    if not runs:
        raise ValueError("plot_curves needs at least one run")
    splits = list(dict.fromkeys(s for run in runs for s in run.evals))
    rows = 3 + len(splits)
    fig = Figure(figsize=(FIG_WIDTH, PANEL_HEIGHT * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run, colour in zip(runs, colours):
        for ax, values in ((axes[0], run.loss), (axes[1], run.exact)):
            ax.plot(run.updates, values, color=colour, alpha=RAW_ALPHA, linewidth=0.8)
            ax.plot(run.updates, moving_average(values, smooth), color=colour, linewidth=1.5,
                    label=Path(run.name).name)
        axes[2].step(run.updates, run.level, where="post", color=colour, linewidth=1.5)
        for ax, split in zip(axes[3:], splits):
            if split in run.evals:
                updates, accuracy, exact = run.evals[split]
                ax.plot(updates, accuracy, color=colour, marker=".", linewidth=1.5)
                ax.plot(updates, exact, color=colour, marker=".", linestyle="--", linewidth=1.2)
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("training exact")
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].set_ylabel("curriculum level")
    axes[2].yaxis.get_major_locator().set_params(integer=True)
    for ax, split in zip(axes[3:], splits):
        ax.set_ylabel(f"{split}\naccuracy / exact")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[0].set_title(f"training figures (faint) and their mean over {smooth} records; evaluation: "
                      f"soft accuracy solid, exact dashed", fontsize="small")
    axes[-1].set_xlabel("update")
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig


def add_curves_parser(subparsers) -> None:
    c = subparsers.add_parser("curves", help="draw the learning curves of runs into one PNG",
                              description="Draw training loss, training exact match, curriculum level and "
                              "every evaluation split of one or more runs (their metrics.jsonl) into one "
                              "PNG, one colour per run; print each run's last figures.")
    c.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directories")
    c.add_argument("--out", type=Path, default=None,
                   help="the PNG to write (default: RUN/curves.png for one run, curves.png for several)")
    c.add_argument("--smooth", type=int, default=20, help="training records per moving average (default: 20)")


def curves_command(args: argparse.Namespace) -> int:
    """`diffvm curves`: load every run first (a bad one stops it before anything is written), draw, save."""
    if args.smooth < 1:
        raise ValueError(f"--smooth = {args.smooth}: expected ≥ 1")
    runs = [load_curves(run) for run in args.runs]
    out = args.out or (args.runs[0] / "curves.png" if len(args.runs) == 1 else Path("curves.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(runs, args.smooth).savefig(out, dpi=DPI)
    for run in runs:
        print(run.summary())
    print(f"curves: {out}")
    return 0

