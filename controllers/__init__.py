"""diffvm.controllers: the learners (program controllers, the memory-augmented model), induction
strategies, the trainer and its checkpoints, and the command line."""

from diffvm.controllers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffvm.controllers.induce import (
    InductionConfig,
    InductionResult,
    arithmetic_machine,
    evaluate_program,
    greedy_program,
    induce,
    sample_programs,
)
from diffvm.controllers.l2e_eval import evaluate_l2e, evaluate_l2e_run, greedy_decode
from diffvm.controllers.model import MEMORIES, MemoryModel, ModelConfig, ModelOutput, StepRecord
from diffvm.controllers.neural_programmer import (
    NeuralProgrammer,
    NeuralProgrammerConfig,
    NPOutput,
    evaluate_np,
    plot_choices,
    train_neural_programmer,
)
from diffvm.controllers.program_controller import ProgramController, StepLogits
from diffvm.controllers.trainer import Run, TrainConfig, evaluate, load_run, run_config, train

__all__ = [
    "MEMORIES", "CheckpointError", "InductionConfig", "InductionResult", "MemoryModel", "ModelConfig", "ModelOutput",
    "NPOutput", "NeuralProgrammer", "NeuralProgrammerConfig", "ProgramController", "Run", "StepLogits", "StepRecord",
    "TrainConfig", "arithmetic_machine", "evaluate", "evaluate_l2e", "evaluate_l2e_run", "evaluate_np",
    "evaluate_program", "greedy_decode", "greedy_program", "induce", "load_checkpoint", "load_run", "plot_choices",
    "run_config", "sample_programs", "save_checkpoint", "train", "train_neural_programmer",
]
