"""An RNN controller that writes a program for the machine, one instruction per step."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from diffvm.interp import Instruction, Machine

__all__ = ["ProgramController", "StepLogits"]


class StepLogits(NamedTuple):
    """One step's unnormalised scores.

    Attributes:
        op: (B, K) over the OpSet's ops.
        operands: one (B, S_t) per operand slot, over the sources of its type at step t.
    """

    op: torch.Tensor
    operands: tuple[torch.Tensor, ...]

    def softmax(self, temperature: float = 1.0) -> Instruction:
        """The soft instruction: a softmax at `temperature` over every distribution."""
        pick = lambda x: torch.softmax(x / temperature, dim=-1)  # noqa: E731
        return Instruction(pick(self.op), tuple(pick(x) for x in self.operands))


class ProgramController(nn.Module):
    """An LSTM or GRU cell run for T program steps; heads give each step's `StepLogits`.

    Its input at step t is [context, the op chosen at step t − 1] (zeros at t = 1), so a
    sampled program is drawn step by step, each step knowing what the previous one chose.

    Args:
        machine: the machine the programs are for (sets K and the sources per slot).
        steps: T, the number of program steps.
        hidden: H, the cell's width.
        context_size: C, width of a per-example context (0: the same program for every example).
        cell: "lstm" or "gru".
    """

    def __init__(self, machine: Machine, steps: int, *, hidden: int = 64, context_size: int = 0,
                 cell: str = "lstm"):
        super().__init__()
        cells = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}
        if cell not in cells:
            raise ValueError(f"controller cell must be one of {sorted(cells)}, got {cell!r}")
        if steps < 1:
            raise ValueError(f"a program needs at least one step, got steps={steps}")
        self.machine, self.steps, self.context_size, self.kind = machine, steps, context_size, cell
        k = len(machine.opset)
        self.cell = cells[cell](context_size + k, hidden)
        self.op_head = nn.Linear(hidden, k)
        # one head per slot, wide enough for the last step's sources; step t uses the first S_t
        self.operand_heads = nn.ModuleList(
            nn.Linear(hidden, machine.num_sources(t, steps)) for t, _ in machine.opset.slots
        )

    def forward(
        self,
        decide: Callable[[int, StepLogits], Instruction],
        *,
        batch: int = 1,
        context: torch.Tensor | None = None,
        steps: int | None = None,
    ) -> tuple[list[StepLogits], list[Instruction]]:
        """Run the controller for `steps` (default T) steps.

        Args:
            decide: maps (step t, its logits) to the instruction the machine runs; its op
                distribution (B, K) is fed back as the next step's input (soft probabilities,
                or one-hot samples).
            batch: B when there is no context.
            context: (B, C) per-example context, or None.
        Returns:
            the logits and the instructions of every step.
        """
        steps = self.steps if steps is None else steps
        if steps > self.steps:
            raise ValueError(f"controller built for {self.steps} steps, asked for {steps}")
        if context is not None:
            batch = context.shape[0]
        ref = self.op_head.weight
        prev = torch.zeros(batch, len(self.machine.opset), device=ref.device, dtype=ref.dtype)
        state = None
        all_logits, instructions = [], []
        for t in range(1, steps + 1):
            x = prev if context is None else torch.cat([context, prev], dim=1)  # (B, C + K)
            state = self.cell(x, state)
            h = state[0] if self.kind == "lstm" else state  # (B, H)
            logits = StepLogits(
                self.op_head(h),
                tuple(
                    head(h)[:, : self.machine.num_sources(ty, t)]  # (B, S_t)
                    for head, (ty, _) in zip(self.operand_heads, self.machine.opset.slots)
                ),
            )
            instruction = decide(t, logits)
            all_logits.append(logits)
            instructions.append(instruction)
            prev = instruction.op
        return all_logits, instructions
