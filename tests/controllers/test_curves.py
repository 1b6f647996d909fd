"""Tests of `diffvm curves`: the moving average against a plain loop, a picture from real runs
(one and several, a last line cut short by a kill), and bad input named with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffvm.controllers.cli import main
from diffvm.controllers.curves import load_curves, moving_average

TINY = ["copy", "--width", "3", "--max-length", "3", "--eval-lengths", "3,6", "--curriculum-step", "1",
        "--memory", "none", "--hidden", "8", "--eval-batch", "8", "--batch", "4", "--quiet",
        "--log-every", "2", "--eval-every", "5"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.integers(1, 50))
def test_moving_average_equals_a_plain_loop_over_trailing_windows(values, window):
    values = np.array(values)
    expected = [np.mean(values[max(0, i + 1 - window): i + 1]) for i in range(len(values))]
    np.testing.assert_allclose(moving_average(values, window), expected, rtol=1e-9, atol=1e-6)


def test_moving_average_refuses_an_empty_window():
    with pytest.raises(ValueError, match="window = 0"):
        moving_average(np.ones(3), 0)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["train", *TINY, "--updates", "10", "--seed", seed, "--run-dir", str(root / name)]) == 0
    return root / "a", root / "b"


def test_one_run_draws_its_png_in_the_run_and_prints_its_last_figures(two_runs, capsys):
    run = two_runs[0]
    assert main(["curves", str(run)]) == 0
    assert (run / "curves.png").read_bytes()[:8] == PNG_MAGIC
    out = capsys.readouterr().out
    assert f"{run}: update 10, level" in out and "length6" in out and f"curves: {run / 'curves.png'}" in out
    curves = load_curves(run)
    assert list(curves.updates) == [2, 4, 6, 8, 10] and set(curves.evals) == {"train", "length3", "length6"}
    assert list(curves.evals["length6"][0]) == [5, 10]


def test_several_runs_and_a_line_cut_short_by_a_kill(two_runs, tmp_path, capsys):
    metrics = two_runs[1] / "metrics.jsonl"
    whole = metrics.read_text()
    try:
        metrics.write_text(whole + '{"kind": "train", "upd')  # a kill mid-write
        out = tmp_path / "pictures" / "both.png"
        assert main(["curves", *map(str, two_runs), "--out", str(out), "--smooth", "3"]) == 0
        assert out.read_bytes()[:8] == PNG_MAGIC
        assert capsys.readouterr().out.count("update 10") == 2
    finally:
        metrics.write_text(whole)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "is not a run directory: no metrics.jsonl"),
    (lambda d: (d / "metrics.jsonl").write_text(""), "holds no records yet"),
])
def test_a_directory_without_records_is_named_and_nothing_is_written(make, message, tmp_path, capsys, two_runs):
    bad = tmp_path / "bad"
    bad.mkdir()
    make(bad)
    out = tmp_path / "c.png"
    with pytest.raises(SystemExit) as e:
        main(["curves", str(two_runs[0]), str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and str(bad) in err
    assert not out.exists()


def test_a_bad_smoothing_window_is_named(two_runs, capsys):
    with pytest.raises(SystemExit):
        main(["curves", str(two_runs[0]), "--smooth", "0"])
    assert "--smooth = 0" in capsys.readouterr().err
