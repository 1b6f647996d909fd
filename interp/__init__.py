"""diffvm.interp: the machine. Value types, the op registry, the soft step, `check_op`."""

from diffvm.interp import ops  # noqa: F401  (registers the starter op library)
from diffvm.interp.check import OpCheckError, check_op
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
    "Vector", "check_op", "get_op", "parse_type", "primitive", "registered_ops",
]
