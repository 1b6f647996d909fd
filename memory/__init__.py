"""diffvm.memory: devices the machine and controllers drive (see `diffvm.interp.device.Device`).

| device | paper |
|---|---|
| `NTMMemory` | Graves et al. 2014 |
| `DNCMemory` | Graves et al. 2016; options of Csordás & Schmidhuber 2019 |
| `NeuralStack`, `NeuralQueue`, `NeuralDeque` | Grefenstette et al. 2015 |
| `StackRNNStacks` | Joulin & Mikolov 2015 |
| `PointerRegisters`, `nram_ops`, `nram_constants` | Kurach et al. 2015 (NRAM) |
"""

from diffvm.memory.addressing import content_weights, cosine_similarity, interpolate, sharpen, shift
from diffvm.memory.dnc import DNCMemory, DNCState
from diffvm.memory.linkage import LinkageState, SparseLinkageState, initial_sparse_linkage, sparse_linkage_step
from diffvm.memory.neural_stack import NeuralDeque, NeuralQueue, NeuralStack
from diffvm.memory.ntm import NTMMemory, erase_add
from diffvm.memory.registers import PointerRegisters, nram_constants, nram_ops
from diffvm.memory.stack_rnn import StackRNNStacks
from diffvm.memory.table import (
    OP_NAMES,
    TABLE_OPS,
    Table,
    TableChoice,
    TableError,
    TableOpSpec,
    TableRegisters,
    TableState,
    encode_tables,
    initial_registers,
    table_ops,
    table_step,
    word_match_features,
)

__all__ = [
    "DNCMemory", "DNCState", "LinkageState", "NTMMemory", "NeuralDeque", "NeuralQueue", "NeuralStack", "OP_NAMES",
    "PointerRegisters", "SparseLinkageState", "StackRNNStacks", "TABLE_OPS", "Table", "TableChoice", "TableError",
    "TableOpSpec", "TableRegisters", "TableState", "content_weights", "cosine_similarity", "encode_tables",
    "erase_add", "initial_registers", "initial_sparse_linkage", "interpolate", "nram_constants", "nram_ops",
    "sharpen", "shift", "sparse_linkage_step", "table_ops", "table_step", "word_match_features",
]
