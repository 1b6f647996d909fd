"""diffvm.tasks: what is learned and how it is scored."""

from diffvm.tasks.arithmetic import FAMILY, ArithmeticFunction, ArithmeticTask

__all__ = ["FAMILY", "ArithmeticFunction", "ArithmeticTask"]
