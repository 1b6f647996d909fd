"""diffvm.tasks: what is learned and how it is scored.

Sequence tasks register themselves by name (`register_task`); `get_task("copy")` finds one.
"""

from diffvm.tasks.algorithmic import Addition, AdditionConfig, Copy, CopyConfig, Parity, ParityConfig
from diffvm.tasks.arithmetic import FAMILY, ArithmeticFunction, ArithmeticTask
from diffvm.tasks.base import TASKS, Batch, Curriculum, GrowingTask, SequenceTask, get_task, register_task
from diffvm.tasks.formal_languages import AnB2n, AnBmCnm, AnBn, AnBnCn, AnBnCnDn, CountingLanguage, LanguageConfig
from diffvm.tasks.graph_text import (
    Episode,
    GraphError,
    GraphSyntaxError,
    Inference,
    ShortestPath,
    Traversal,
    format_episode,
    format_graph,
    parse_episode,
    parse_graph,
)
from diffvm.tasks.graphs import (
    DncEncoding,
    GraphShortestPath,
    GraphTask,
    GraphTaskConfig,
    GraphTraversal,
    TokenEncoding,
    babi_episode,
    babi_path_finding,
    random_graph,
    score_answer,
    score_answers,
    solve,
    transit_graph,
)
from diffvm.tasks.l2e import VOCABULARY, Example, decode, encode, sample_examples
from diffvm.tasks.l2e import Curriculum as L2ECurriculum
from diffvm.tasks.l2e_task import L2EConfig, L2ETask, encode_examples
from diffvm.tasks.nram import (
    MEMORY_TASKS,
    Access,
    Increment,
    MemoryExamples,
    MemoryTask,
    Swap,
    get_memory_task,
    resize_program,
)
from diffvm.tasks.ntm_tasks import (
    AssociativeRecall,
    AssociativeRecallConfig,
    PrioritySort,
    PrioritySortConfig,
    RepeatCopy,
    RepeatCopyConfig,
)
from diffvm.tasks.table_qa import (
    COMPOSITIONAL_FAMILIES,
    SINGLE_FAMILIES,
    TableQA,
    TableQABatch,
    TableQAConfig,
    TableQuestion,
    encode_questions,
    reference_program,
)
from diffvm.tasks.transduction import BigramFlip, Reversal, SymbolCopy, Transduction, TransductionConfig

__all__ = [
    "COMPOSITIONAL_FAMILIES", "FAMILY", "MEMORY_TASKS", "SINGLE_FAMILIES", "TASKS", "VOCABULARY", "Access", "Addition",
    "AdditionConfig", "AnB2n", "AnBmCnm", "AnBn", "AnBnCn", "AnBnCnDn", "ArithmeticFunction", "ArithmeticTask",
    "AssociativeRecall", "AssociativeRecallConfig", "Batch", "BigramFlip", "Copy", "CopyConfig", "CountingLanguage",
    "Curriculum", "DncEncoding", "Episode", "Example", "GraphError", "GraphShortestPath", "GraphSyntaxError",
    "GraphTask", "GraphTaskConfig", "GraphTraversal", "GrowingTask", "Increment", "Inference", "L2EConfig",
    "L2ECurriculum", "L2ETask", "LanguageConfig", "MemoryExamples", "MemoryTask", "Parity", "ParityConfig",
    "PrioritySort", "PrioritySortConfig", "RepeatCopy", "RepeatCopyConfig", "Reversal", "SequenceTask", "ShortestPath",
    "Swap", "SymbolCopy", "TableQA", "TableQABatch", "TableQAConfig", "TableQuestion", "TokenEncoding", "Transduction",
    "TransductionConfig", "Traversal", "babi_episode", "babi_path_finding", "decode", "encode", "encode_examples",
    "encode_questions", "format_episode", "format_graph", "get_memory_task", "get_task", "parse_episode", "parse_graph",
    "random_graph", "reference_program", "register_task", "resize_program", "sample_examples", "score_answer",
    "score_answers", "solve", "transit_graph",
]
