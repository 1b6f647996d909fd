"""diffvm.programs: discrete programs: the IR, listings, JSON, the hard interpreter, discretisation."""

from diffvm.programs.discretise import discretise
from diffvm.programs.interpreter import run, run_trace
from diffvm.programs.program import Program, ProgramError, Step

__all__ = ["Program", "ProgramError", "Step", "discretise", "run", "run_trace"]
