"""Neural stack, queue and deque (Grefenstette et al. 2015, "Learning to Transduce with Unbounded Memory").

Notation (docs/NOTATION.md): B batch, C capacity (steps a structure can take), W word width. The
paper's symbols: V values, s strengths, d push, u pop, v value, r read.

Every step writes one new row of V (eq. 1; two rows for the deque, eq. 6), pushed with strength
d, after a pop of strength u has removed up to u of strength from one end (eq. 2 for the stack,
eq. 4 for the queue, eq. 7–8 for the deque). The read is the top unit of strength seen from an
end, a mixture of rows (eq. 3, 5, 10, 11). With d, u ∈ {0, 1} this is a discrete stack, queue or
deque of the pushed vectors, and reading an empty one gives zeros.

Fixed shapes. The paper's V_t grows by a row per step; here rows are preallocated: C of them for
the stack and queue (step t, counting from 0, writes row t), 2C for the deque (step t writes its
bottom row at C−1−t and its top row at C+t, so rows stay ordered bottom to top). Rows not yet
written have strength 0 and take no part: a pop leaves them at max(0, 0 − x) = 0 for any x ≥ 0,
and a read weighs them by min(0, ·) = 0. So running the equations over all rows is running them
over the paper's t rows. A step beyond the capacity C raises an error.

On the machine each end is two ops, `push(Vector[W]) -> Vector[W]` (returning the value pushed)
and `pop() -> Vector[W]` (returning the element at the pop end before the step, zeros when
empty): with op probabilities π a step pushes with d = π[push] and pops with u = π[pop]. The
deque's ops are `push_top`, `pop_top`, `push_bot`, `pop_bot`. The hard interpreter's structure
is a tuple of the pushed vectors, bottom first.

Kinks. max and min are not differentiable where their arguments tie; following the paper
(footnote 1) we take the derivative of the left argument there: `relu` for max(0, x) (0 at
x = 0) and `_min_left` for min(s, ·). Unwritten rows sit exactly on such ties (max(0, 0 − 0),
min(0, 0)), but there both arguments are locally constant, so any choice gives the true zero
gradient; elsewhere a tie needs an exact coincidence of controller outputs.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import torch
import torch.nn.functional as F

from diffvm.interp.device import Device, DeviceOp, InterfaceField, hard_gate
from diffvm.interp.kernels import strength_step
from diffvm.interp.types import Vector

__all__ = ["End", "NeuralDeque", "NeuralQueue", "NeuralStack", "pop", "read", "read_weights"]


class End(enum.Enum):
    """An end of a structure whose rows are ordered bottom (row 0) to top (last row)."""

    TOP = "top"
    BOTTOM = "bottom"


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Σ_{j<i} x[j] along the last dimension, (B, N) -> (B, N); shifted rather than `cumsum − x`,
    so that an exact 0 or 1 stays exact (the hard semantics compare equal to a list)."""
    return F.pad(x.cumsum(-1)[..., :-1], (1, 0))  # (B, N)


def _strength_beyond(strengths: torch.Tensor, end: End) -> torch.Tensor:
    """The strength lying between each row and `end`: Σ_{j>i} s[j] for the top (eq. 2, 3),
    Σ_{j<i} s[j] for the bottom (eq. 4, 5).

    Args:
        strengths: (B, N) s.
    Returns:
        (B, N).
    """
    if end is End.TOP:
        return _exclusive_cumsum(strengths.flip(-1)).flip(-1)  # (B, N)
    return _exclusive_cumsum(strengths)  # (B, N)


def _min_left(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """min(a, b) whose gradient goes to a where a = b (the paper's footnote 1)."""
    return torch.where(a <= b, a, b)


def pop(strengths: torch.Tensor, u: torch.Tensor, end: End) -> torch.Tensor:
    """Remove u of strength from `end` (eq. 2 from the top, eq. 4 from the bottom, eq. 7–8):

        s'[i] = max(0, s[i] − max(0, u − Σ_{j beyond i} s[j]))

    Args:
        strengths: (B, N) s ≥ 0.
        u: (B,) pop strength in [0, 1].
        end: where to pop.
    Returns:
        (B, N) the strengths after the pop; their total is max(0, Σ s − u).
    """
    left_to_remove = F.relu(u.unsqueeze(-1) - _strength_beyond(strengths, end))  # (B, N)
    return F.relu(strengths - left_to_remove)


def read_weights(strengths: torch.Tensor, end: End) -> torch.Tensor:
    """How much of each row the read from `end` takes: the unit of strength nearest `end`
    (eq. 3 from the top, eq. 5 from the bottom, eq. 10–11):

        w[i] = min(s[i], max(0, 1 − Σ_{j beyond i} s[j]))

    Args:
        strengths: (B, N) s ≥ 0.
        end: where to read.
    Returns:
        (B, N) weights ≥ 0 summing to min(1, Σ s).
    """
    room = F.relu(1 - _strength_beyond(strengths, end))  # (B, N)
    return _min_left(strengths, room)


def read(values: torch.Tensor, strengths: torch.Tensor, end: End) -> torch.Tensor:
    """r = Σ_i w[i]·V[i] with w = `read_weights(strengths, end)`.

    Args:
        values: (B, N, W) V.
        strengths: (B, N) s.
        end: where to read.
    Returns:
        (B, W); zeros when the structure is empty.
    """
    return torch.einsum("bn,bnw->bw", read_weights(strengths, end), values)  # (B, W)


def _push(
    values: torch.Tensor, strengths: torch.Tensor, row: int, v: torch.Tensor, d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the new row: V[row] = v, s[row] = d (the i = t cases of eq. 1–2, eq. 6 and 9).

    Args:
        values: (B, N, W); strengths: (B, N); row: an unwritten row; v: (B, W); d: (B,).
    Returns:
        values (B, N, W) and strengths (B, N).
    """
    index = torch.tensor([row], device=values.device)
    return (values.index_copy(1, index, v.unsqueeze(1)),  # (B, N, W)
            strengths.index_copy(1, index, d.unsqueeze(1)))  # (B, N)


def _end_fields(width: int) -> dict[str, InterfaceField]:
    """The controls of one end: the paper's controller gives d, u = sigmoid(·), v = tanh(·)
    (Section 3.4)."""
    return {"d": InterfaceField((), "sigmoid"), "u": InterfaceField((), "sigmoid"),
            "v": InterfaceField((width,), "tanh")}


class _StrengthState(NamedTuple):
    """The state of a neural stack, queue or deque.

    Attributes:
        values: (B, N, W) V, rows ordered bottom to top; N = C (stack, queue) or 2C (deque).
        strengths: (B, N) s, 0 for rows not yet written.
        steps: how many steps have been taken (the paper's t − 1 before step t).
    """

    values: torch.Tensor
    strengths: torch.Tensor
    steps: int


class _StrengthMemory(Device):
    """What the stack, queue and deque share: C steps of `rows_per_step` preallocated rows of
    width W, and hard controls (every sigmoid field, a push or pop strength, rounded to {0, 1})."""

    rows_per_step: int
    State = _StrengthState

    def __init__(self, capacity: int, width: int):
        """
        Args:
            capacity: C, the number of steps the state can hold.
            width: W, the width of a pushed value.
        """
        super().__init__()
        for name, value in [("capacity", capacity), ("width", width)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        self.capacity = capacity
        self.width = width

    def initial_state(self, batch: int, *, device=None, dtype=None) -> _StrengthState:
        """An empty structure: V_0 and s_0 zero (Section 3.4)."""
        rows = self.rows_per_step * self.capacity
        return _StrengthState(torch.zeros(batch, rows, self.width, device=device, dtype=dtype),
                              torch.zeros(batch, rows, device=device, dtype=dtype), 0)

    def harden(self, interface):
        """Push and pop strengths rounded to {0, 1}; values unchanged."""
        gates = [name for name, field in self.interface_fields().items() if field.activation == "sigmoid"]
        return interface._replace(**{name: hard_gate(getattr(interface, name)) for name in gates})

    # --- machine ops ----------------------------------------------------------------------
    # (op suffix, the end a push adds to, the end a pop takes from), one entry per pair of ops
    _machine_ends: tuple[tuple[str, End, End], ...]

    def ops(self) -> tuple[DeviceOp, ...]:
        vector = Vector[self.width]
        return tuple(op for suffix, _, _ in self._machine_ends
                     for op in (DeviceOp(f"push{suffix}", (vector,), vector), DeviceOp(f"pop{suffix}", (), vector)))

    def machine_step(self, weights, args, state):
        """d = π[push], u = π[pop] at each end; a pop returns the read before the step."""
        controls, results = {}, []
        for i, (suffix, _, pop_end) in enumerate(self._machine_ends):
            (v,), () = args[2 * i], args[2 * i + 1]
            controls |= {f"d{suffix}": weights[:, 2 * i], f"u{suffix}": weights[:, 2 * i + 1], f"v{suffix}": v}
            results += [v, read(state.values, state.strengths, pop_end)]
        _, state = self(self.Interface(**controls), state)
        return results, state

    def plain_initial(self) -> tuple:
        return ()

    def plain_apply(self, op, items, *args):
        for suffix, push_end, pop_end in self._machine_ends:
            if op == f"push{suffix}":
                return args[0], ((*items, args[0]) if push_end is End.TOP else (args[0], *items))
            if op == f"pop{suffix}":
                if not items:
                    return (0.0,) * self.width, items
                return (items[-1], items[:-1]) if pop_end is End.TOP else (items[0], items[1:])
        raise KeyError(f"{type(self).__name__} has no op {op!r}")

    def _check_room(self, state: _StrengthState) -> None:
        if state.steps >= self.capacity:
            raise ValueError(f"{type(self).__name__}: the state has taken {state.steps} steps, its capacity "
                             f"C = {self.capacity}; construct it with a larger capacity")


class _SingleEnded(_StrengthMemory):
    """A neural stack or queue: each step pops u from `pop_end`, pushes v with strength d on top,
    and reads from `pop_end`. Subclasses choose `pop_end`."""

    pop_end: End
    rows_per_step = 1

    class Interface(NamedTuple):
        """d: (B,) push strength; u: (B,) pop strength; v: (B, W) the value pushed."""

        d: torch.Tensor
        u: torch.Tensor
        v: torch.Tensor

    def interface_fields(self) -> dict[str, InterfaceField]:
        return _end_fields(self.width)

    @property
    def read_size(self) -> int:
        return self.width

    def forward(self, interface: Interface, state: _StrengthState) -> tuple[torch.Tensor, _StrengthState]:
        """Pop, then push, then read (eq. 1–3 for the stack; 1, 4, 5 for the queue).

        Returns:
            the read (B, W) r_t and the new state.
        """
        self._check_room(state)
        index = torch.tensor([state.steps], device=state.values.device)
        values = state.values.index_copy(1, index, interface.v.unsqueeze(1))  # (B, C, W): V_t[t] = v (eq. 1)
        # `pop`, the strength's push and `read` in one pass (diffvm.interp.kernels.strength_step)
        strengths, r = strength_step(state.strengths, values, interface.u, interface.d, state.steps,
                                     end=self.pop_end)  # (B, C), (B, W)
        return r, _StrengthState(values, strengths, state.steps + 1)


class NeuralStack(_SingleEnded):
    """The neural stack (Section 3.1): pops and reads at the top. Read size W."""

    pop_end = End.TOP
    _machine_ends = (("", End.TOP, End.TOP),)


class NeuralQueue(_SingleEnded):
    """The neural queue (Section 3.2): pushes at the back (top), pops and reads at the front
    (bottom). Read size W."""

    pop_end = End.BOTTOM
    _machine_ends = (("", End.TOP, End.BOTTOM),)


class NeuralDeque(_StrengthMemory):
    """The neural deque (Section 3.3): push, pop and read at both ends. Each step pops u_top from
    the top, then u_bot from the bottom, then pushes v_bot at the bottom and v_top at the top, then
    reads both ends. Read size 2W: [r_top, r_bot]."""

    rows_per_step = 2
    _machine_ends = (("_top", End.TOP, End.TOP), ("_bot", End.BOTTOM, End.BOTTOM))

    class Interface(NamedTuple):
        """d_*: (B,) push strengths; u_*: (B,) pop strengths; v_*: (B, W) values, for each end."""

        d_top: torch.Tensor
        u_top: torch.Tensor
        v_top: torch.Tensor
        d_bot: torch.Tensor
        u_bot: torch.Tensor
        v_bot: torch.Tensor

    def interface_fields(self) -> dict[str, InterfaceField]:
        return {f"{name}_{side}": field for side in ("top", "bot") for name, field in _end_fields(self.width).items()}

    @property
    def read_size(self) -> int:
        return 2 * self.width

    def forward(self, interface: Interface, state: _StrengthState) -> tuple[torch.Tensor, _StrengthState]:
        """Eq. 6–11. (Eq. 7's upper limit 2(t−1)−1 reads as a typo for 2(t−1), every row above i:
        only that makes the top pop the mirror of eq. 8's bottom pop and of the stack's eq. 2.)
        The two pops commute, up to rounding: they take strength from opposite ends, and when
        their sum exceeds the total, both orders leave nothing. We keep the paper's order.

        Returns:
            the read (B, 2W) [r_top, r_bot] and the new state.
        """
        self._check_room(state)
        t = state.steps
        strengths = pop(state.strengths, interface.u_top, End.TOP)  # (B, 2C) s^top, eq. 7
        strengths = pop(strengths, interface.u_bot, End.BOTTOM)  # (B, 2C) s^both, eq. 8
        values, strengths = _push(state.values, strengths, self.capacity - 1 - t, interface.v_bot, interface.d_bot)
        values, strengths = _push(values, strengths, self.capacity + t, interface.v_top, interface.d_top)
        reads = torch.cat([read(values, strengths, End.TOP), read(values, strengths, End.BOTTOM)], -1)  # (B, 2W)
        return reads, _StrengthState(values, strengths, t + 1)
