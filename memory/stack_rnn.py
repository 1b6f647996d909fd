"""The stacks of the Stack-RNN (Joulin & Mikolov 2015, "Inferring Algorithmic Patterns with
Stack-Augmented Recurrent Nets").

Notation (docs/NOTATION.md): B batch, P stacks, C depth (elements a stack holds), W element width
(the paper's elements are scalars: W = 1).

Each of the P stacks is an array s of C elements, the top at s[0]. A softmax a over the actions
(PUSH, POP, NO-OP) mixes the three outcomes (eq. 4–5 with the NO-OP extension of Section 3.1):

    s_t[0] = a[PUSH]·v + a[POP]·s_{t−1}[1]   + a[NO-OP]·s_{t−1}[0]
    s_t[i] = a[PUSH]·s_{t−1}[i−1] + a[POP]·s_{t−1}[i+1] + a[NO-OP]·s_{t−1}[i]

In the paper v = σ(D h_t) comes from the hidden state; here the controller hands it over as the
interface field v (sigmoid). An empty stack holds the empty value (−1 in the paper, "when the
stack is empty, s_t is set to −1", and in the authors' code), which also fills the bottom after
a pop (s_{t−1}[C] reads the empty value). The depth is fixed, as in the authors' code: a push
onto a full stack drops its bottom element. The read is the top k elements of every stack (the
paper's s^k, k = 2 in its experiments), flattened (P, k, W) -> P·k·W.

Hard semantics (`harden`, the paper's "rounding" of the controller at test time): one-hot
actions make each stack a list of at most C values: push appends, pop on a non-empty stack
removes the top and on an empty one does nothing, and reading below the bottom gives the empty
value.

On the machine each stack p is two ops, `push{p}(Vector[W]) -> Vector[W]` (returning the value
pushed) and `pop{p}() -> Vector[W]` (returning the top before the step: the empty value when
empty); the index is left out when there is one stack. With op probabilities π a step's actions
are a = (π[push], π[pop], 1 − π[push] − π[pop]). The hard interpreter's stacks are tuples, top
last.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from diffvm.interp.device import Device, DeviceOp, InterfaceField, hard_choice
from diffvm.interp.types import Vector

__all__ = ["ACTIONS", "EMPTY_VALUE", "StackRNNStacks"]

# The order of the actions in the interface's softmax.
ACTIONS = ("push", "pop", "no-op")
# The paper's value of an empty stack element.
EMPTY_VALUE = -1.0


class StackRNNStacks(Device):
    """P stacks of depth C of width-W elements, driven by a softmax over push/pop/no-op each.
    Read size P·k·W."""

    class Interface(NamedTuple):
        """actions: (B, P, 3) a, a distribution over (push, pop, no-op) per stack;
        v: (B, P, W) the value each stack would push."""

        actions: torch.Tensor
        v: torch.Tensor

    class State(NamedTuple):
        """contents: (B, P, C, W) the stacks, top element first."""

        contents: torch.Tensor

    def __init__(self, stacks: int, depth: int, width: int = 1, top_k: int = 2, empty_value: float = EMPTY_VALUE):
        """
        Args:
            stacks: P, the number of stacks (the paper uses up to 60).
            depth: C, the elements a stack holds; a push onto a full stack drops the bottom one.
            width: W, the width of an element (1 in the paper).
            top_k: k, the elements read from the top of each stack (2 in the paper), at most C.
            empty_value: the value of an empty element (−1 in the paper).
        """
        super().__init__()
        for name, value in [("stacks", stacks), ("depth", depth), ("width", width), ("top_k", top_k)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"StackRNNStacks: {name} must be a positive int, got {value!r}")
        if top_k > depth:
            raise ValueError(f"StackRNNStacks: top_k = {top_k} reads deeper than the depth C = {depth}; "
                             "expected top_k <= depth")
        self.stacks = stacks
        self.depth = depth
        self.width = width
        self.top_k = top_k
        self.empty_value = float(empty_value)

    def interface_fields(self) -> dict[str, InterfaceField]:
        # a = softmax(A h) (eq. 3); the pushed value σ(D h) (eq. 4)
        return {"actions": InterfaceField((self.stacks, len(ACTIONS)), "softmax"),
                "v": InterfaceField((self.stacks, self.width), "sigmoid")}

    @property
    def read_size(self) -> int:
        return self.stacks * self.top_k * self.width

    def initial_state(self, batch: int, *, device=None, dtype=None) -> State:
        """Every stack empty: all elements hold the empty value."""
        return self.State(torch.full((batch, self.stacks, self.depth, self.width), self.empty_value,
                                     device=device, dtype=dtype))

    def forward(self, interface: Interface, state: State) -> tuple[torch.Tensor, State]:
        """One step of every stack (eq. 4–5 with NO-OP).

        Returns:
            the read (B, P·k·W), the top k elements of each stack after the step, and the new state.
        """
        previous = state.contents  # (B, P, C, W)
        below_bottom = torch.full_like(previous[:, :, :1], self.empty_value)  # (B, P, 1, W)
        # push: v on top, every element one deeper, the bottom one dropped
        pushed = torch.cat([interface.v.unsqueeze(2), previous[:, :, :-1]], dim=2)  # (B, P, C, W)
        # pop: every element one up, the empty value enters at the bottom
        popped = torch.cat([previous[:, :, 1:], below_bottom], dim=2)  # (B, P, C, W)
        outcomes = torch.stack([pushed, popped, previous], dim=-1)  # (B, P, C, W, 3) in ACTIONS order
        contents = torch.einsum("bpcwa,bpa->bpcw", outcomes, interface.actions)  # (B, P, C, W)
        read = contents[:, :, :self.top_k].reshape(contents.shape[0], self.read_size)  # (B, P·k·W)
        return read, self.State(contents)

    def harden(self, interface: Interface) -> Interface:
        """Actions one-hot at their argmax; values unchanged."""
        one_hot = hard_choice(interface.actions)  # (B, P, 3)
        return interface._replace(actions=one_hot)

    # --- machine ops ----------------------------------------------------------------------
    def _suffixes(self) -> list[str]:
        return [""] if self.stacks == 1 else [str(p) for p in range(self.stacks)]

    def ops(self) -> tuple[DeviceOp, ...]:
        vector = Vector[self.width]
        return tuple(op for p in self._suffixes()
                     for op in (DeviceOp(f"push{p}", (vector,), vector), DeviceOp(f"pop{p}", (), vector)))

    def machine_step(self, weights, args, state):
        """Stack p's actions (π[push{p}], π[pop{p}], the rest); a pop returns the top before."""
        push, pop = weights[:, 0::2], weights[:, 1::2]  # (B, P) each
        actions = torch.stack([push, pop, 1 - push - pop], dim=-1)  # (B, P, 3) in ACTIONS order
        values = torch.stack([v for (v,) in args[0::2]], dim=1)  # (B, P, W)
        _, new_state = self(self.Interface(actions, values), state)
        tops = state.contents[:, :, 0]  # (B, P, W)
        return [x for p in range(self.stacks) for x in (values[:, p], tops[:, p])], new_state

    def plain_initial(self) -> tuple:
        return ((),) * self.stacks

    def plain_apply(self, op, stacks, *args):
        kind = "push" if op.startswith("push") else "pop"
        index = int(op.removeprefix(kind) or 0)
        items = stacks[index]
        if kind == "push":
            result, items = args[0], (*items, args[0])[-self.depth:]  # a full stack drops its bottom
        else:
            result, items = (items[-1], items[:-1]) if items else ((self.empty_value,) * self.width, items)
        return result, (*stacks[:index], items, *stacks[index + 1:])

