from dataclasses import replace

import numpy as np
import pytest
from matplotlib._pylab_helpers import Gcf
from matplotlib.image import imread

from diffvm.controllers.pictures import (
    MAX_OP_LABELS,
    MAX_TIME_TICKS,
    Recording,
    _boundaries,
    _instructions_figure,
    _ponder_figure,
    _runs,
    _sequences_figure,
    _weightings_figure,
    plot_instructions,
    plot_ponder,
    plot_weightings,
    save_pictures,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def recording(steps=6, slots=8, *, ponder=True, machine=True, ops=3, ponder_steps=None, seed=0) -> Recording:
    """A consistent random recording: T = steps, N = slots, 1–3 ponder steps per input step
    (or `ponder_steps`, which then sets T; or one without halting)."""
    rng = np.random.default_rng(seed)
    if ponder_steps is not None:
        ponder_steps, steps = np.asarray(ponder_steps), len(ponder_steps)
    elif ponder:
        ponder_steps = rng.integers(1, 4, steps)
    else:
        ponder_steps = np.ones(steps, dtype=int)
    step_of = np.repeat(np.arange(steps), ponder_steps)  # (P,)
    p = len(step_of)
    read = rng.dirichlet(np.ones(slots), (p, 2))  # (P, R, N)
    write = rng.dirichlet(np.ones(slots), (p, 1))  # (P, 1, N)
    return Recording(
        inputs=rng.integers(0, 2, (steps, 5)).astype(float),
        targets=rng.integers(0, 2, (steps, 4)).astype(float),
        outputs=rng.random((steps, 4)),
        mask=(np.arange(steps) >= steps // 2).astype(float),
        ponder_steps=ponder_steps if ponder else None,
        weightings={"ntm read": read, "ntm write": write} if machine else {},
        instructions=rng.dirichlet(np.ones(ops), p) if machine else None,
        op_names=[f"arith::op{i}" for i in range(ops)] if machine else [],
        step_of=step_of,
    )


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 100


def test_a_long_recording_saves_every_picture_as_valid_pngs(tmp_path):
    # (how fast is not a test's business: a shared CI machine made a 2 s bound fail at 3.2 s)
    rec = recording(steps=120, slots=128, ops=12)
    figures_before = Gcf.get_num_fig_managers()
    paths = save_pictures(rec, tmp_path / "inspect" / "example0")
    assert [p.name for p in paths] == ["sequences.png", "weightings.png", "instructions.png", "ponder.png"]
    for path in paths:
        assert_png(path)
    assert Gcf.get_num_fig_managers() == figures_before  # nothing left open in pyplot


def test_pictures_that_do_not_apply_are_skipped_and_one_unscored_nan_step_still_plots(tmp_path):
    rec = recording(steps=1, ponder=False, machine=False)
    rec.outputs = np.full_like(rec.outputs, np.nan)
    rec.mask = np.zeros(1)
    paths = save_pictures(rec, tmp_path)
    assert paths == [tmp_path / "sequences.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sequences.png"]
    assert_png(paths[0])


@pytest.mark.parametrize("plot, field", [(plot_weightings, "weightings"), (plot_instructions, "instructions"),
                                         (plot_ponder, "ponder_steps")])
def test_plotting_a_missing_part_names_it(tmp_path, plot, field):
    with pytest.raises(ValueError, match=f"Recording.{field}"):
        plot(recording(ponder=False, machine=False), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _bad(field, value):
    return field, lambda rec: replace(rec, **{field: value(rec)})


@pytest.mark.parametrize("field, corrupt", [
    _bad("inputs", lambda r: r.inputs[:, 0]),
    _bad("targets", lambda r: r.targets[1:]),
    _bad("outputs", lambda r: r.outputs[:, 1:]),
    _bad("mask", lambda r: r.mask[:-1]),
    _bad("ponder_steps", lambda r: r.ponder_steps[:-1]),
    _bad("ponder_steps", lambda r: r.ponder_steps + 1),
    _bad("ponder_steps", lambda r: r.ponder_steps.astype(float)),
    _bad("step_of", lambda r: r.step_of + 1),
    _bad("step_of", lambda r: r.step_of[::-1]),
    _bad("step_of", lambda r: r.step_of.astype(float)),
    ("weightings['ntm write']", lambda r: replace(r, weightings={**r.weightings,
                                                                 "ntm write": r.weightings["ntm write"][:-1]})),
    ("weightings['ntm read']", lambda r: replace(r, weightings={**r.weightings,
                                                                "ntm read": r.weightings["ntm read"][:, 0]})),
    _bad("instructions", lambda r: r.instructions[:, :-1]),
    _bad("instructions", lambda r: r.instructions[1:]),
], ids=lambda x: x if isinstance(x, str) else "")
def test_validate_names_the_field_that_disagrees(field, corrupt):
    rec = recording()
    rec.validate()
    with pytest.raises(ValueError, match=f"Recording.{field}".replace("[", r"\[")):
        corrupt(rec).validate()


def test_runs_and_boundaries_match_a_plain_loop():
    rng = np.random.default_rng(1)
    for _ in range(50):
        flags = rng.random(rng.integers(0, 12)) < 0.5
        runs, start = [], None
        for i, flag in enumerate(flags.tolist() + [False]):
            if flag and start is None:
                start = i
            if not flag and start is not None:
                runs.append((start, i))
                start = None
        assert _runs(flags) == runs
        step_of = np.repeat(np.arange(5), rng.integers(1, 4, 5))
        loop = [p for p in range(1, len(step_of)) if step_of[p] != step_of[p - 1]]
        assert _boundaries(step_of).tolist() == loop


def test_unscored_steps_are_hatched_on_targets_and_outputs():
    rec = replace(recording(steps=9), mask=np.array([0, 0, 1, 1, 0, 1, 1, 1, 0.0]))
    inputs, targets, outputs = _sequences_figure(rec).axes[:3]
    assert not inputs.patches
    for ax in (targets, outputs):
        spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
        assert spans == [(-0.5, 1.5), (3.5, 4.5), (7.5, 8.5)]
        assert "not scored" in ax.get_title()
    assert not _sequences_figure(replace(rec, mask=np.ones(9))).axes[1].patches


def test_input_step_boundaries_are_drawn_only_when_some_step_ponders():
    def heat_maps(rec):
        figures = (_weightings_figure(rec), _instructions_figure(rec))
        return [ax for fig in figures for ax in fig.axes if ax.get_ylabel() in ("memory slot", "op")]

    pondering = heat_maps(recording(ponder_steps=[1, 3, 1, 2]))  # step_of = 0 1 1 1 2 3 3
    assert len(pondering) == 4
    for ax in pondering:
        (lines,) = ax.collections
        assert [segment[0][0] for segment in lines.get_segments()] == [0.5, 3.5, 4.5]
    assert not any(ax.collections for ax in heat_maps(recording(ponder_steps=[1, 1, 1, 1])))
    assert not any(ax.collections for ax in heat_maps(recording(ponder=False)))


def test_weightings_have_one_titled_panel_per_head_and_a_colour_bar_per_weighting():
    fig = _weightings_figure(recording())
    heat_maps = [ax for ax in fig.axes if ax.get_ylabel() == "memory slot"]
    assert [ax.get_title() for ax in heat_maps] == ["ntm read, head 0", "ntm read, head 1", "ntm write"]
    assert len(fig.axes) == len(heat_maps) + 2  # + one colour bar per weighting
    assert heat_maps[0].images[0].get_array().shape == (8, len(recording().step_of))  # (N, P)


def test_many_steps_and_ops_keep_tick_labels_few():
    rec = recording(steps=200, ops=100)
    (ax, _colour_bar) = _instructions_figure(rec).axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert 1 < len(labels) <= MAX_OP_LABELS and labels[0] == "arith::op0"
    assert set(labels) <= set(rec.op_names)
    assert len(ax.get_xticks()) <= MAX_TIME_TICKS + 1
    assert len(_ponder_figure(rec).axes[0].get_xticks()) <= MAX_TIME_TICKS + 1


def test_ponder_bars_are_the_steps_per_input_step():
    rec = recording(steps=7)
    (ax,) = _ponder_figure(rec).axes
    assert [p.get_height() for p in ax.patches] == rec.ponder_steps.tolist()


def test_all_zero_weightings_over_one_slot_still_plot(tmp_path):
    rec = recording(steps=1, slots=1)
    rec.weightings = {k: np.zeros_like(w) for k, w in rec.weightings.items()}
    plot_weightings(rec, tmp_path / "weightings.png")
    assert_png(tmp_path / "weightings.png")
