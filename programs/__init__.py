"""diffvm.programs: discrete programs: the IR, listings, JSON, the hard interpreter, discretisation,
and the Learning-to-Execute snippet language (parser, evaluator, compiler to machine programs)."""

from diffvm.programs.compile_snippet import compile_snippet, run_one_hot
from diffvm.programs.discretise import discretise, one_hot_trace
from diffvm.programs.interpreter import Execution, execute, run, run_trace
from diffvm.programs.program import Program, ProgramError, Step
from diffvm.programs.snippets import Snippet, SnippetError, evaluate, format_snippet, parse_snippet
from diffvm.programs.table_program import (
    TABLE_PROGRAM_FORMAT,
    TableAnswer,
    TableProgram,
    TableProgramError,
    TableStep,
    discretise_choices,
    program_choices,
    run_table_program,
)

__all__ = [
    "TABLE_PROGRAM_FORMAT", "Execution", "Program", "ProgramError", "Snippet", "SnippetError", "Step",
    "TableAnswer", "TableProgram", "TableProgramError", "TableStep", "compile_snippet", "discretise",
    "discretise_choices", "evaluate", "execute", "format_snippet", "one_hot_trace", "parse_snippet",
    "program_choices", "run", "run_one_hot", "run_table_program", "run_trace",
]
