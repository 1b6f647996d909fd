"""diffvm.tasks: what is learned and how it is scored.

Sequence tasks register themselves by name (`register_task`); `get_task("copy")` finds one.
"""

from diffvm.tasks.algorithmic import Copy, CopyConfig, Parity, ParityConfig
from diffvm.tasks.arithmetic import FAMILY, ArithmeticFunction, ArithmeticTask
from diffvm.tasks.base import TASKS, Batch, Curriculum, GrowingTask, SequenceTask, get_task, register_task
from diffvm.tasks.formal_languages import AnB2n, AnBmCnm, AnBn, AnBnCn, AnBnCnDn, CountingLanguage, LanguageConfig
from diffvm.tasks.l2e import VOCABULARY, Example, decode, encode, sample_examples
from diffvm.tasks.l2e import Curriculum as L2ECurriculum
from diffvm.tasks.ntm_tasks import (
    AssociativeRecall,
    AssociativeRecallConfig,
    PrioritySort,
    PrioritySortConfig,
    RepeatCopy,
    RepeatCopyConfig,
)
from diffvm.tasks.transduction import BigramFlip, Reversal, SymbolCopy, Transduction, TransductionConfig

__all__ = [
    "FAMILY", "TASKS", "VOCABULARY", "AnB2n", "AnBmCnm", "AnBn", "AnBnCn", "AnBnCnDn", "ArithmeticFunction",
    "ArithmeticTask", "AssociativeRecall", "AssociativeRecallConfig", "Batch", "BigramFlip", "Copy", "CopyConfig",
    "CountingLanguage", "Curriculum", "Example", "GrowingTask", "L2ECurriculum", "LanguageConfig", "Parity",
    "ParityConfig", "PrioritySort", "PrioritySortConfig", "RepeatCopy", "RepeatCopyConfig", "Reversal",
    "SequenceTask", "SymbolCopy", "Transduction", "TransductionConfig", "decode", "encode", "get_task",
    "register_task", "sample_examples",
]
