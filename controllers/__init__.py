"""diffvm.controllers: controllers that write programs, induction strategies, the command line."""

from diffvm.controllers.induce import (
    InductionConfig,
    InductionResult,
    arithmetic_machine,
    evaluate_program,
    greedy_program,
    induce,
)
from diffvm.controllers.program_controller import ProgramController, StepLogits

__all__ = ["InductionConfig", "InductionResult", "ProgramController", "StepLogits",
           "arithmetic_machine", "evaluate_program", "greedy_program", "induce"]
