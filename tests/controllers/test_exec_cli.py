import argparse
import io
import json
import sys
import time

import pytest

from diffvm.controllers.exec_cli import add_exec_parser, run_exec
from diffvm.programs import Program, run
from diffvm.programs.snippets import MAX_SNIPPET_CHARS

PAPER = "j=8584#for x in range(8):j+=920#b=(1500+j)#print((b+7567))@\n"


def _exec(argv, capsys):
    """Parse `argv` as `diffvm` would with the exec subcommand added; (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="diffvm")
    add_exec_parser(parser.add_subparsers(dest="command", required=True))
    status = run_exec(parser.parse_args(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_exec_prints_both_forms_the_program_and_three_agreeing_values(tmp_path, capsys):
    path = tmp_path / "paper.l2e"
    path.write_text(PAPER)
    status, out, err = _exec(["exec", str(path)], capsys)
    assert (status, err) == (0, "")
    assert "j=8584#for x in range(8):j+=920#b=(1500+j);#print((b+7567))@" in out
    assert "for x in range(8):\n    j += 920\n" in out
    assert "# machine program (10 steps)\nprogram() -> Scalar:\n" in out
    assert "    s10 = arith::add(s9, n7567)\n    return s10" in out
    values = out.split("# value\n")[1].splitlines()
    assert [line.split()[-1] for line in values] == ["25011"] * 3
    assert [line.rsplit(maxsplit=1)[0] for line in values] == [
        "reference evaluator", "hard interpreter", "soft machine (one-hot)"]


def test_exec_reads_multi_line_python_from_standard_input(monkeypatch, capsys):
    _stdin(monkeypatch, b"a = 5\nfor x in range(3):\n    a -= x\nprint(a * 2 if a > 1 else 0)\n")
    status, out, _ = _exec(["exec", "-"], capsys)
    assert status == 0
    assert "a=5#for x in range(3):a-=x#print(((a*2) if a>1 else 0))@" in out
    assert out.rstrip().endswith("soft machine (one-hot)  4")


def test_exec_json_report_holds_a_runnable_program(monkeypatch, capsys):
    _stdin(monkeypatch, PAPER.encode())
    status, out, _ = _exec(["exec", "--json", "-"], capsys)
    report = json.loads(out)
    assert status == 0 and report["agree"] is True
    assert report["value"] == {"evaluator": 25011, "hard_interpreter": 25011, "soft_machine_one_hot": 25011}
    assert report["snippet"]["python"].startswith("j = 8584\n")
    assert report["steps"] == 10 and report["program"].startswith("program() -> Scalar:")
    assert run(Program.from_dict(report["program_json"]), {}) == 25011


@pytest.mark.parametrize("data, message", [
    (b"a = 1\nprint((a + 2)\n", "<stdin>: line 2, column 14: unexpected end of the snippet; expected ')'"),
    (b"a = 1\nwhile a:\n    a -= 1\nprint(a)\n", "line 2, column 1: 'while' is a Python keyword"),
    (b"print(b)@", "line 1, column 7: name 'b' is used before it is assigned"),
    (b"", "the snippet is empty"),
    (b"print(\xff)", "line 1, column 7: non-ASCII character '\\ufffd' (U+FFFD)"),
    (b"print((99999999*99999999))@", "exact only up to 2**53"),
])
def test_exec_reports_a_snippet_outside_the_language_on_stderr(monkeypatch, capsys, data, message):
    _stdin(monkeypatch, data)
    status, out, err = _exec(["exec", "--json", "-"], capsys)
    assert (status, out) == (1, "")
    assert err.startswith("diffvm exec: ") and message in err


def test_exec_refuses_a_megabyte_on_standard_input_quickly(monkeypatch, capsys):
    _stdin(monkeypatch, b"a=1#" * (2**18))
    start = time.perf_counter()
    status, _, err = _exec(["exec", "-"], capsys)
    assert time.perf_counter() - start < 5  # refused by its length, not parsed: a hang, not a slow machine, fails this
    assert status == 1 and f"more than the limit of {MAX_SNIPPET_CHARS}" in err


def test_exec_names_a_missing_file(tmp_path, capsys):
    status, out, err = _exec(["exec", str(tmp_path / "nowhere.py")], capsys)
    assert (status, out) == (1, "")
    assert "cannot read" in err and "nowhere.py" in err
