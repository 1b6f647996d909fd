"""`diffvm train table_qa`, and `diffvm eval` / `diffvm inspect` on the run it writes."""

from __future__ import annotations

import json

import pytest

from diffvm.controllers.cli import main
from diffvm.controllers.np_cli import is_np_run, load_np_run


@pytest.fixture(scope="module")
def np_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("np") / "run"
    code = main(["train", "table_qa", "--updates", "4", "--eval-every", "2", "--eval-questions", "8",
                 "--hidden", "8", "--test-questions", "12", "--run-dir", str(run), "--quiet", "--json"])
    assert code == 0
    return run


def test_train_writes_a_run_with_both_splits(np_run):
    assert is_np_run(np_run)
    summary = json.loads((np_run / "results.json").read_text())
    assert set(summary["splits"]) == {"train", "larger"}
    assert summary["splits"]["larger"]["rows"] == 2 * summary["splits"]["train"]["rows"]
    assert all(r["questions"] == 12 for r in summary["splits"].values())
    records = (np_run / "records.jsonl").read_text().splitlines()
    assert [json.loads(r)["update"] for r in records] == [2, 4]


def test_train_refuses_an_existing_run_directory(np_run, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "table_qa", "--updates", "1", "--run-dir", str(np_run), "--quiet"])
    assert e.value.code == 2
    assert "exists" in capsys.readouterr().err


def test_eval_reports_soft_and_discretised_accuracy(np_run, capsys):
    assert main(["eval", str(np_run), "--batch", "10", "--splits", "larger", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    larger = report["splits"]["larger"]
    assert set(report["splits"]) == {"larger"} and larger["questions"] == 10
    assert 0 <= larger["soft"] <= 1 and 0 <= larger["discretised"] <= 1
    assert json.loads((np_run / "eval.json").read_text()) == report


def test_eval_is_seeded(np_run, capsys):
    main(["eval", str(np_run), "--batch", "6", "--seed", "3", "--json"])
    first = json.loads(capsys.readouterr().out)
    main(["eval", str(np_run), "--batch", "6", "--seed", "3", "--json"])
    assert json.loads(capsys.readouterr().out) == first  # the same questions, the same numbers


def test_inspect_prints_the_program_and_saves_the_picture(np_run, tmp_path, capsys):
    assert main(["inspect", str(np_run), "--seed", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    model = load_np_run(np_run)
    assert out.count("  t=") == model.config.steps
    assert "# discretised program: " in out and "# reference program: " in out
    assert (tmp_path / "choices.png").stat().st_size > 1000


def test_unknown_split_is_named(np_run, capsys):
    with pytest.raises(SystemExit):
        main(["inspect", str(np_run), "--split", "huge"])
    assert "'huge'" in capsys.readouterr().err


def test_corrupt_weights_give_a_clear_error(np_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "records.jsonl"):
        (bad / name).write_text((np_run / name).read_text())
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        main(["eval", str(bad)])
    assert "model.pt" in capsys.readouterr().err


def test_bad_option_names_the_field(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "table_qa", "--steps", "0", "--run-dir", str(tmp_path / "r"), "--quiet"])
    assert "steps" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
