"""diffvm.tasks: what is learned and how it is scored."""

from diffvm.tasks.arithmetic import FAMILY, ArithmeticFunction, ArithmeticTask
from diffvm.tasks.l2e import VOCABULARY, Curriculum, Example, decode, encode, sample_examples

__all__ = [
    "FAMILY", "VOCABULARY", "ArithmeticFunction", "ArithmeticTask", "Curriculum", "Example", "decode", "encode",
    "sample_examples",
]
