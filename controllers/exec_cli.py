"""`diffvm exec FILE`: run a Learning-to-Execute snippet three ways and show the machine program.

    diffvm exec snippet.py          # or `-` for standard input
    diffvm exec --json snippet.py

The snippet may be in the original data's form (`a=5#print((a*3))@`) or multi-line Python. It is
printed in both forms, then its compiled machine program, then the value from the reference
evaluator, the hard interpreter and the soft machine fed one-hot instructions. A snippet outside
the language gets its error (line, column, what was expected) on standard error and exit status 1;
so does a machine answer that differs from the evaluator's.
"""

from __future__ import annotations

import argparse
import json
import sys

from diffvm.programs.compile_snippet import compile_snippet, run_one_hot
from diffvm.programs.interpreter import run
from diffvm.programs.snippets import MAX_SNIPPET_CHARS, SnippetError, evaluate, format_snippet, parse_snippet

__all__ = ["add_exec_parser", "run_exec", "exec_report"]

EXIT_ERROR = 1
_LABELS = {"evaluator": "reference evaluator", "hard_interpreter": "hard interpreter",
           "soft_machine_one_hot": "soft machine (one-hot)"}


def add_exec_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `exec` subcommand to the `add_subparsers()` object of the `diffvm` parser."""
    parser = subparsers.add_parser(
        "exec", help="run a Learning-to-Execute snippet: its machine program and its value",
        description="Parse a snippet (statements joined by '#' and ended by '@', or multi-line Python), "
        "compile it to a machine program, and print the program and the snippet's value from the "
        "reference evaluator, the hard interpreter and the soft machine with one-hot instructions.")
    parser.add_argument("file", metavar="FILE", help="the snippet's file, or - for standard input")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return parser


def _read(path: str) -> str:
    """The file's text, at most one character past the parser's limit (so that it reports the excess)."""
    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        data = stream.read(MAX_SNIPPET_CHARS + 1) if stream is not None else sys.stdin.read(MAX_SNIPPET_CHARS + 1)
    else:
        with open(path, "rb") as f:
            data = f.read(MAX_SNIPPET_CHARS + 1)
    # undecodable bytes become U+FFFD, which the parser reports as non-ASCII at their place
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def _plain(value: float) -> int | float:
    """A machine's float answer as an int when it is one."""
    return int(value) if float(value).is_integer() else value


def exec_report(text: str) -> dict:
    """Parse, compile and run a snippet; the report `diffvm exec` prints. Raises `SnippetError`."""
    snippet = parse_snippet(text)
    program = compile_snippet(snippet)
    values = {
        "evaluator": evaluate(snippet),
        "hard_interpreter": _plain(run(program, {})),
        "soft_machine_one_hot": _plain(run_one_hot(program)),
    }
    return {
        "snippet": {"l2e": format_snippet(snippet, "l2e"), "python": format_snippet(snippet, "lines")},
        "program": program.listing(),
        "program_json": program.to_dict(),
        "steps": len(program.steps),
        "value": values,
        "agree": len(set(values.values())) == 1,
    }


def _text(report: dict) -> str:
    width = max(map(len, _LABELS.values()))
    return "\n".join([
        "# snippet", report["snippet"]["l2e"], "", report["snippet"]["python"].rstrip("\n"), "",
        f"# machine program ({report['steps']} steps)", report["program"], "",
        "# value", *(f"{_LABELS[name]:<{width}}  {v}" for name, v in report["value"].items()),
    ])


def run_exec(args: argparse.Namespace) -> int:
    """Run `diffvm exec` for parsed arguments (`file`, `json`); returns the exit status."""
    where = "<stdin>" if args.file == "-" else args.file
    try:
        report = exec_report(_read(args.file))
    except OSError as e:
        print(f"diffvm exec: cannot read {where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except SnippetError as e:
        print(f"diffvm exec: {where}: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report, indent=2) if args.json else _text(report))
    if not report["agree"]:
        print(f"diffvm exec: {where}: the machine's answers differ from the evaluator's: {report['value']}",
              file=sys.stderr)
        return EXIT_ERROR
    return 0
