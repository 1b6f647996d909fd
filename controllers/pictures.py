"""The pictures `diffvm inspect` saves: what one example's run did, drawn as heat maps and bars.

The model's replay fills a `Recording` (numpy arrays only); the functions here draw it:

- `plot_sequences`: inputs, targets and outputs over time, the copy-task figures of Graves et
  al. 2014, with the unscored steps hatched;
- `plot_weightings`: each read/write weighting over steps and memory slots, one panel per head,
  as in the NTM and DNC papers' weighting figures;
- `plot_instructions`: the machine's op probabilities per step;
- `plot_ponder`: ponder steps per input step (ACT, Graves 2016; PonderNet);
- `save_pictures`: every picture that applies, saved into one folder.

Letters: T input steps, I input width, O output width, P ponder (machine) steps in all, H heads,
N memory slots, K ops. Without halting each input step is one machine step, so P = T.

Figures are built as `matplotlib.figure.Figure` objects and saved with `Figure.savefig`, which
needs neither pyplot nor a display; nothing is registered with pyplot, so a figure is freed as
soon as it goes out of scope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["Recording", "plot_sequences", "plot_weightings", "plot_instructions", "plot_ponder",
           "save_pictures"]

# Resolution of the saved PNGs; width in inches of every figure, whatever the number of steps.
DPI = 100
FIG_WIDTH = 10.0
# Height in inches of one panel (heat map or bar chart).
PANEL_HEIGHT = 1.6
# Margins in inches, fixed rather than found by matplotlib's constrained layout, which made saving
# a T = 120 recording's pictures about 1.5× slower here: room for a title above each panel, tick
# labels and an axis label left and below, a colour bar's labels right.
TITLE_ROOM = 0.4
BOTTOM_ROOM = 0.55
LEFT_ROOM = 0.8
RIGHT_ROOM = 0.3
# Width in inches of one character of an op name at the "small" font size (≈ 8 pt): the
# instruction picture's left margin grows with the longest name.
OP_CHAR_WIDTH = 0.07
# Most tick labels on a time axis and most op names on the instruction picture's y axis: beyond
# these, labels overlap and cannot be read.
MAX_TIME_TICKS = 10
MAX_OP_LABELS = 32
# Height in inches given to each op name label, so that the labels do not overlap.
OP_LABEL_HEIGHT = 0.18
# Smallest top of a weighting's colour scale: an all-zero weighting would otherwise give an empty
# range (vmin = vmax), which draws nothing useful.
MIN_WEIGHTING_SCALE = 1e-6
COLOUR_MAP = "viridis"
# Unscored steps are covered by a half-transparent hatched band; input-step boundaries are thin
# white lines, faint enough not to hide the weightings under them.
UNSCORED_ALPHA = 0.55
BOUNDARY_ALPHA = 0.6
BOUNDARY_WIDTH = 0.6


@dataclass
class Recording:
    """What one example's run did. T input steps; P ponder steps in all (Σ over input steps).

    Attributes:
        inputs: (T, I) the input sequence.
        targets: (T, O) the target sequence.
        outputs: (T, O) the model's output probabilities.
        mask: (T,) 1 where the output is scored, 0 where it is not.
        ponder_steps: (T,) int, machine steps taken per input step; None without halting.
        weightings: title -> (P, H, N), e.g. "ntm read" (P, R, N), "ntm write" (P, 1, N): one row
            per ponder step, H heads, N memory slots.
        instructions: (P, K) op probabilities per ponder step; None without a machine.
        op_names: the K op names, e.g. "arith::add", "stack::push".
        step_of: (P,) int, the input step (0-based) each ponder step belongs to; non-decreasing.
    """

    inputs: np.ndarray
    targets: np.ndarray
    outputs: np.ndarray
    mask: np.ndarray
    ponder_steps: np.ndarray | None
    weightings: dict[str, np.ndarray]
    instructions: np.ndarray | None
    op_names: list[str]
    step_of: np.ndarray

    def validate(self) -> None:
        """Raise ValueError naming the first field whose shape (or step bookkeeping) disagrees."""
        if np.ndim(self.inputs) != 2:
            raise ValueError(f"Recording.inputs has shape {np.shape(self.inputs)}, expected (T, I)")
        t = np.shape(self.inputs)[0]
        if np.ndim(self.targets) != 2 or np.shape(self.targets)[0] != t:
            raise ValueError(f"Recording.targets has shape {np.shape(self.targets)}, expected (T, O) with "
                             f"T={t} as in inputs")
        o = np.shape(self.targets)[1]
        _expect_shape("outputs", self.outputs, (t, o), "(T, O) as targets")
        _expect_shape("mask", self.mask, (t,), "(T,)")
        if np.ndim(self.step_of) != 1:
            raise ValueError(f"Recording.step_of has shape {np.shape(self.step_of)}, expected (P,)")
        step_of = np.asarray(self.step_of)
        p = len(step_of)
        if p and not np.issubdtype(step_of.dtype, np.integer):
            raise ValueError(f"Recording.step_of has dtype {step_of.dtype}, expected integers")
        if p and (step_of.min() < 0 or step_of.max() >= t):
            raise ValueError(f"Recording.step_of holds input steps {step_of.min()}..{step_of.max()}, "
                             f"expected 0..{t - 1} (T={t})")
        if np.any(np.diff(step_of) < 0):
            raise ValueError("Recording.step_of goes back in time, expected non-decreasing input steps")
        if self.ponder_steps is not None:
            _expect_shape("ponder_steps", self.ponder_steps, (t,), "(T,)")
            ponder = np.asarray(self.ponder_steps)
            if not np.issubdtype(ponder.dtype, np.integer):
                raise ValueError(f"Recording.ponder_steps has dtype {ponder.dtype}, expected integers")
            counted = np.bincount(step_of.astype(np.int64), minlength=t)  # an empty step_of may be float
            if not np.array_equal(ponder, counted):
                raise ValueError(f"Recording.ponder_steps is {ponder.tolist()} but step_of counts "
                                 f"{counted.tolist()} ponder steps per input step; expected them equal")
        for title, w in self.weightings.items():
            if np.ndim(w) != 3 or np.shape(w)[0] != p:
                raise ValueError(f"Recording.weightings[{title!r}] has shape {np.shape(w)}, expected (P, H, N) "
                                 f"with P={p} as in step_of")
        if self.instructions is not None:
            _expect_shape("instructions", self.instructions, (p, len(self.op_names)),
                          "(P, K) with P as in step_of and K = len(op_names)")


def _expect_shape(field: str, value: np.ndarray, shape: tuple[int, ...], meaning: str) -> None:
    if np.shape(value) != shape:
        raise ValueError(f"Recording.{field} has shape {np.shape(value)}, expected {shape}, i.e. {meaning}")


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """The [start, stop) runs of consecutive True entries of a (T,) bool array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _boundaries(step_of: np.ndarray) -> np.ndarray:
    """The ponder steps p (between 1 and P − 1) that start a new input step: step_of[p] ≠ step_of[p − 1]."""
    return np.flatnonzero(np.diff(step_of) != 0) + 1


def _integer_ticks(ax) -> None:
    """Ticks only at whole steps, slots, channels and counts: at most MAX_TIME_TICKS along x.

    min_n_ticks=1 because with the default of 2, an axis spanning a single step (T = 1, N = 1)
    falls back to fractional ticks like 0.05, which name no step and slow the drawing.
    """
    ax.xaxis.set_major_locator(MaxNLocator(MAX_TIME_TICKS, integer=True, min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator("auto", integer=True, min_n_ticks=1))


def _heat_map(ax, values: np.ndarray, *, vmin: float | None = None, vmax: float | None = None):
    """Draw (rows, steps) values with one pixel per entry centred on integer coordinates."""
    rows, steps = values.shape
    image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=COLOUR_MAP, vmin=vmin, vmax=vmax,
                      extent=(-0.5, steps - 0.5, rows - 0.5, -0.5))
    _integer_ticks(ax)
    return image


def _pondered(rec: Recording) -> bool:
    """Whether some input step took several machine steps (P > T).

    Only then are input-step boundaries drawn: with P = T every machine step is its own input
    step and the lines would cover the picture.
    """
    return len(rec.step_of) > len(rec.inputs)


def _mark_input_steps(ax, step_of: np.ndarray) -> None:
    """Draw a vertical line between the last ponder step of each input step and the next one."""
    ax.vlines(_boundaries(step_of) - 0.5, 0, 1, transform=ax.get_xaxis_transform(), colors="white",
              alpha=BOUNDARY_ALPHA, linewidth=BOUNDARY_WIDTH)


def _step_label(pondered: bool) -> str:
    return "ponder step (white lines: next input step)" if pondered else "time step"


def _panels(rows: int, panel_height: float = PANEL_HEIGHT, left: float = LEFT_ROOM) -> tuple[Figure, np.ndarray]:
    """A figure of `rows` panels stacked on one shared x axis, with the fixed margins above."""
    height = rows * (panel_height + TITLE_ROOM) + BOTTOM_ROOM
    fig = Figure(figsize=(FIG_WIDTH, height))
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, gridspec_kw={
        "left": left / FIG_WIDTH, "right": 1 - RIGHT_ROOM / FIG_WIDTH,
        "top": 1 - TITLE_ROOM / height, "bottom": BOTTOM_ROOM / height,
        "hspace": TITLE_ROOM / panel_height})  # hspace is a fraction of one panel's height
    return fig, axes[:, 0]


def _sequences_figure(rec: Recording) -> Figure:
    """The figure `plot_sequences` saves (its docstring says what it shows)."""
    unscored = _runs(np.asarray(rec.mask) == 0)
    fig, axes = _panels(3)
    # (title, values, scored?, y label, colour bar label): outputs are scored against targets,
    # both probabilities on [0, 1]; the inputs keep their own range
    panels = [("inputs", rec.inputs, False, "input channel", "value"),
              ("targets", rec.targets, True, "output channel", "target"),
              ("outputs", rec.outputs, True, "output channel", "probability")]
    for ax, (title, values, scored, ylabel, bar_label) in zip(axes, panels):
        vmin, vmax = (0.0, 1.0) if scored else (None, None)
        image = _heat_map(ax, np.asarray(values, dtype=float).T, vmin=vmin, vmax=vmax)  # (I or O, T)
        fig.colorbar(image, ax=ax, label=bar_label)
        if scored and unscored:
            title += " (hatched: not scored)"
            for start, stop in unscored:
                ax.axvspan(start - 0.5, stop - 0.5, facecolor="white", edgecolor="grey", hatch="//",
                           alpha=UNSCORED_ALPHA, linewidth=0)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    axes[-1].set_xlabel("time step")
    return fig


def _weightings_figure(rec: Recording) -> Figure:
    """The figure `plot_weightings` saves (its docstring says what it shows)."""
    if not rec.weightings:
        raise ValueError("Recording.weightings is empty; expected at least one (P, H, N) weighting to plot")
    step_of, pondered = np.asarray(rec.step_of), _pondered(rec)
    fig, all_axes = _panels(sum(np.shape(w)[1] for w in rec.weightings.values()))
    axes = iter(all_axes)
    for title, w in rec.weightings.items():
        w = np.asarray(w, dtype=float)  # (P, H, N)
        heads = w.shape[1]
        vmax = max(float(np.nanmax(w, initial=0.0)), MIN_WEIGHTING_SCALE)
        head_axes = [next(axes) for _ in range(heads)]
        for h, ax in enumerate(head_axes):
            image = _heat_map(ax, w[:, h, :].T, vmin=0.0, vmax=vmax)  # (N, P)
            if pondered:
                _mark_input_steps(ax, step_of)
            ax.set_title(f"{title}, head {h}" if heads > 1 else title)
            ax.set_ylabel("memory slot")
        fig.colorbar(image, ax=head_axes, label="weighting")
    all_axes[-1].set_xlabel(_step_label(pondered))
    return fig


def _instructions_figure(rec: Recording) -> Figure:
    """The figure `plot_instructions` saves (its docstring says what it shows)."""
    if rec.instructions is None:
        raise ValueError("Recording.instructions is None; expected (P, K) op probabilities to plot")
    k = len(rec.op_names)
    labelled = range(0, k, max(1, math.ceil(k / MAX_OP_LABELS)))  # every ⌈K / MAX_OP_LABELS⌉-th op
    longest = max((len(name) for name in rec.op_names), default=0)
    fig, (ax,) = _panels(1, max(PANEL_HEIGHT, OP_LABEL_HEIGHT * len(labelled)),
                         LEFT_ROOM + OP_CHAR_WIDTH * longest)
    image = _heat_map(ax, np.asarray(rec.instructions, dtype=float).T, vmin=0.0, vmax=1.0)  # (K, P)
    ax.set_yticks(list(labelled), [rec.op_names[i] for i in labelled], fontsize="small")
    pondered = _pondered(rec)
    if pondered:
        _mark_input_steps(ax, np.asarray(rec.step_of))
    fig.colorbar(image, ax=ax, label="probability")
    ax.set_title("instructions: op probabilities per step")
    ax.set_xlabel(_step_label(pondered))
    ax.set_ylabel("op")
    return fig


def _ponder_figure(rec: Recording) -> Figure:
    """The figure `plot_ponder` saves (its docstring says what it shows)."""
    if rec.ponder_steps is None:
        raise ValueError("Recording.ponder_steps is None; expected (T,) steps per input step to plot")
    ponder = np.asarray(rec.ponder_steps)
    fig, (ax,) = _panels(1)
    ax.bar(np.arange(len(ponder)), ponder, width=0.8)
    _integer_ticks(ax)
    ax.set_title(f"ponder steps per input step (mean {ponder.mean():.2f}, total {ponder.sum()})")
    ax.set_xlabel("input step")
    ax.set_ylabel("ponder steps")
    return fig


def _save(build, rec: Recording, path: str | Path) -> None:
    rec.validate()
    build(rec).savefig(path, dpi=DPI)


def plot_sequences(rec: Recording, path: str | Path) -> None:
    """Save inputs (T, I), targets (T, O) and outputs (T, O) as three heat maps on one time axis.

    Unscored steps (mask 0) are hatched on the targets and outputs. Targets and outputs share the
    probability scale [0, 1]; the inputs keep their own range.
    """
    _save(_sequences_figure, rec, path)


def plot_weightings(rec: Recording, path: str | Path) -> None:
    """Save each weighting (P, H, N) as heat maps, one panel per head: x = step, y = memory slot.

    Each weighting's colour scale runs from 0 to its largest entry (shared by its heads), so a
    weighting spread over many slots stays visible. Input-step boundaries are white lines when
    P > T. Raises ValueError when there are no weightings.
    """
    _save(_weightings_figure, rec, path)


def plot_instructions(rec: Recording, path: str | Path) -> None:
    """Save the op probabilities (P, K) as a heat map: x = step, y = op name.

    At most MAX_OP_LABELS names are written; with more ops, every k-th. Input-step boundaries
    are white lines when P > T. Raises ValueError when instructions is None.
    """
    _save(_instructions_figure, rec, path)


def plot_ponder(rec: Recording, path: str | Path) -> None:
    """Save the ponder steps per input step (T,) as a bar chart. Raises ValueError when ponder_steps is None."""
    _save(_ponder_figure, rec, path)


def save_pictures(rec: Recording, out_dir: str | Path) -> list[Path]:
    """Save every picture that applies into out_dir (created if missing); return their paths.

    Always sequences.png; weightings.png unless there are none; instructions.png unless
    instructions is None; ponder.png unless ponder_steps is None.
    """
    rec.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pictures = [("sequences.png", _sequences_figure, True),
                ("weightings.png", _weightings_figure, bool(rec.weightings)),
                ("instructions.png", _instructions_figure, rec.instructions is not None),
                ("ponder.png", _ponder_figure, rec.ponder_steps is not None)]
    paths = []
    for name, build, applies in pictures:
        if applies:
            build(rec).savefig(out / name, dpi=DPI)
            paths.append(out / name)
    return paths
