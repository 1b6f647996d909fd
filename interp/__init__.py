"""diffvm.interp: the machine. Value types, the op registry, the soft step, halting, `check_op`."""

from diffvm.interp import ops  # noqa: F401  (registers the starter op library)
from diffvm.interp.check import OpCheckError, check_op
from diffvm.interp.halting import act, geometric_prior, halting_unit, ponder, ponder_sample, pondernet_loss
from diffvm.interp.machine import Instruction, Machine, MachineState, Source
from diffvm.interp.registry import Op, OpDefinitionError, OpSet, get_op, primitive, registered_ops
from diffvm.interp.types import (
    Bool,
    Categorical,
    Pointer,
    Scalar,
    Selection,
    ValueType,
    Vector,
    parse_type,
)

__all__ = [
    "Bool", "Categorical", "Instruction", "Machine", "MachineState", "Op", "OpCheckError",
    "OpDefinitionError", "OpSet", "Pointer", "Scalar", "Selection", "Source", "ValueType",
    "Vector", "act", "check_op", "geometric_prior", "get_op", "halting_unit", "parse_type", "ponder",
    "ponder_sample", "pondernet_loss", "primitive", "registered_ops",
]
