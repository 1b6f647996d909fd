"""diffvm.tasks: what is learned and how it is scored.

Sequence tasks register themselves by name (`register_task`); `get_task("copy")` finds one.
"""

from diffvm.tasks.algorithmic import Copy, CopyConfig, Parity, ParityConfig
from diffvm.tasks.arithmetic import FAMILY, ArithmeticFunction, ArithmeticTask
from diffvm.tasks.base import TASKS, Batch, Curriculum, SequenceTask, get_task, register_task
from diffvm.tasks.l2e import VOCABULARY, Example, decode, encode, sample_examples
from diffvm.tasks.l2e import Curriculum as L2ECurriculum

__all__ = [
    "FAMILY", "TASKS", "VOCABULARY", "ArithmeticFunction", "ArithmeticTask", "Batch", "Copy", "CopyConfig",
    "Curriculum", "Example", "L2ECurriculum", "Parity", "ParityConfig", "SequenceTask", "decode", "encode",
    "get_task", "register_task", "sample_examples",
]
