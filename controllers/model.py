"""A memory-augmented model: an RNN controller, a device, the soft machine and halting.

At every input step t the model runs n = 1 … N_t *ponder steps* (one when there is no halting
and `max_ponder` = 1). Ponder step n:

    c_n          = [x_t, δ_{n,1}, r_{n−1}, flat(registers_{n−1})]      controller input (B, C)
    h_n          = cell(c_n, h_{n−1})                                  LSTM / GRU / tanh layer
    h_n^l        = cell_l(h_n^{l−1}, h_{n−1}^l), l = 2 … L             stacked layers; h_n is the top one's
    ξ_n          = clip(W_ξ h_n)                                       device interface (DNC's ξ)
    r_n, M_n     = device(ξ_n, M_{n−1})                                the device's read
    I_n          = softmax(clip(W_I h_n))                              instruction over the OpSet
    registers_n  = machine step(I_n)                                   per-type registers
    y_n          = clip(W_y [h_n, r_n, flat(registers_n)])             output logits (B, O)
    halt_n       = σ(w_h · h_n + b_h)                                  ACT / PonderNet halting unit

The flag δ_{n,1} marks the first ponder step of an input step (Graves 2016, §2); `r_{n−1}` is
the read of the *previous* step (the DNC's r_{t−1} fed to the controller); controller outputs are
clipped to ±`clip` (20 in Collier & Beel 2018). With ACT, y_t and every recurrent state (the
controller's, the device's, the registers) are the halting-weighted means over ponder steps;
with PonderNet the loss is the halting-weighted mean of the per-step losses.

A plain LSTM (no device, no machine, one ponder step, nothing recorded) runs the whole sequence
through `torch.lstm`, the kernel behind `nn.LSTM` (cuDNN on a GPU), with the same parameters and
the same equations as the step loop: a training step 1.3× (batch 100) to 1.9× (batch 32) faster
on one CPU thread (`benchmarks/lstm_fast_path.py`).

The machine (when `ops` is set) restarts at every input step: its sources are the input x_t
(a `Vector[I]` named "x"), its constants, the registers carried over from the last input step
(s0) and the results of this input step's ponder steps so far (the Neural Programmer pipe). A
device is driven either by the controller's interface (the NTM/DNC way) or, with
`machine_memory`, by the machine's device ops (`memory::push`, …).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from diffvm.interp import Instruction, Machine, MachineState, OpSet, Scalar, Vector
from diffvm.interp.device import Device, hard_choice, hard_gate
from diffvm.interp.halting import act, halting_unit, ponder, ponder_sample, pondernet_loss
from diffvm.memory import (
    DNCMemory,
    NeuralDeque,
    NeuralQueue,
    NeuralStack,
    NTMMemory,
    PointerRegisters,
    StackRNNStacks,
)
from diffvm.tasks.base import Batch, SequenceTask

__all__ = ["MEMORIES", "ModelConfig", "ModelOutput", "MemoryModel", "StepRecord"]

CONTROLLERS = ("lstm", "gru", "ff")
HALTING = ("none", "act", "pondernet")
# The device name the machine gives a memory it drives through ops (`memory::push`).
MACHINE_DEVICE = "memory"


@dataclass
class ModelConfig:
    """A controller, its memory, its machine and its halting; every field is a command-line option."""

    controller: str = "lstm"  # "lstm", "gru" or "ff" (a feed-forward tanh layer, no recurrent state)
    hidden: int = 100  # H, the controller's width (100 in the NTM paper)
    layers: int = 1  # L, stacked controller layers of width H; the heads read the top one (2 in Learning to Execute)
    memory: str = "none"  # "none", "ntm", "dnc", "stack", "queue", "deque", "stackrnn" or "registers"
    memory_slots: int = 128  # N: rows (ntm, dnc), capacity in steps (stack, queue, deque), depth (stackrnn), M (nram)
    memory_width: int = 20  # W: word width (ntm, dnc, stack, queue, deque, stackrnn)
    heads: int = 1  # read heads (ntm, dnc), stacks (stackrnn), registers G (registers)
    link_top_k: int = 0  # dnc: keep the K largest links per slot (the DNC paper's sparse links, K = 8); 0: exact
    ops: str = ""  # comma-separated ops the machine runs each ponder step, e.g. "arith::add,arith::sub"
    machine_memory: bool = False  # the machine drives the memory through its ops instead of the controller's interface
    halting: str = "none"  # "none" (max_ponder steps per input step), "act" or "pondernet"
    max_ponder: int = 1  # M, the most ponder steps per input step (the halting cap)
    ponder_cost: float = 0.01  # ACT's τ: weight of the ponder cost N + R in the loss
    act_epsilon: float = 0.01  # ACT's ε: halt once the halting units sum to 1 − ε
    prior: float = 0.2  # PonderNet's λ_p, the geometric prior's halting probability
    kl_weight: float = 0.01  # PonderNet's β, weight of KL(p ‖ geometric prior)
    clip: float = 20.0  # controller outputs are clipped to ±clip

    def validate(self) -> None:
        """Raise `ValueError` naming the field whose value is out of range."""
        checks = {
            "controller": (self.controller in CONTROLLERS, f"one of {', '.join(CONTROLLERS)}"),
            "hidden": (self.hidden >= 1, "≥ 1"),
            "layers": (self.layers >= 1, "≥ 1"),
            "memory": (self.memory in MEMORIES, f"one of {', '.join(MEMORIES)}"),
            "memory_slots": (self.memory_slots >= 1, "≥ 1"),
            "memory_width": (self.memory_width >= 1, "≥ 1"),
            "heads": (self.heads >= 1, "≥ 1"),
            "link_top_k": (self.link_top_k >= 0 and (self.link_top_k == 0 or self.memory == "dnc"),
                           "≥ 0, and 0 unless memory is dnc"),
            "halting": (self.halting in HALTING, f"one of {', '.join(HALTING)}"),
            "max_ponder": (self.max_ponder >= 1, "≥ 1"),
            "ponder_cost": (self.ponder_cost >= 0, "≥ 0"),
            "act_epsilon": (0 < self.act_epsilon < 1, "in (0, 1)"),
            "prior": (0 < self.prior <= 1, "in (0, 1]"),
            "kl_weight": (self.kl_weight >= 0, "≥ 0"),
            "clip": (self.clip > 0, "> 0"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"ModelConfig.{name} = {getattr(self, name)!r}: expected {expected}")
        if self.machine_memory and not (self.memory != "none" and self.ops):
            raise ValueError("ModelConfig.machine_memory needs a memory and a machine (ops)")
        if self.halting != "none" and self.max_ponder < 2:
            raise ValueError(f"ModelConfig.max_ponder = {self.max_ponder}: halting {self.halting!r} needs ≥ 2")

    def check_length(self, steps: int) -> None:
        """Raise `ValueError` if sequences of `steps` input steps do not fit the memory."""
        rows = steps * self.max_ponder
        if self.memory in ("stack", "queue", "deque") and rows > self.memory_slots:
            raise ValueError(f"ModelConfig.memory_slots = {self.memory_slots}: a {self.memory} keeps a row "
                             f"per ponder step, and {steps} input steps × max_ponder {self.max_ponder} need {rows}")

    @property
    def op_names(self) -> list[str]:
        return [name.strip() for name in self.ops.split(",") if name.strip()]


# One registration point for the memories a model can be built with.
MEMORIES: dict[str, Callable[[ModelConfig], Device] | None] = {
    "none": None,
    "ntm": lambda c: NTMMemory(c.memory_slots, c.memory_width, read_heads=c.heads),
    "dnc": lambda c: DNCMemory(c.memory_slots, c.memory_width, read_heads=c.heads, link_top_k=c.link_top_k or None),
    "stack": lambda c: NeuralStack(c.memory_slots, c.memory_width),
    "queue": lambda c: NeuralQueue(c.memory_slots, c.memory_width),
    "deque": lambda c: NeuralDeque(c.memory_slots, c.memory_width),
    "stackrnn": lambda c: StackRNNStacks(c.heads, c.memory_slots, c.memory_width),
    "registers": lambda c: PointerRegisters(c.memory_slots, c.heads),
}


class ModelOutput(NamedTuple):
    """What a forward pass gives.

    Attributes:
        logits: (B, T, O) output logits (ACT: the halting-weighted mean of the ponder steps').
        steps: (B, T) ponder steps taken per input step (PonderNet training: the expected number).
        ponder_cost: (B,) Σ_t (N_t + R_t) (ACT); zeros otherwise.
        step_logits: (B, T, M, O) every ponder step's logits (PonderNet training), else None.
        halt_weights: (B, T, M) the halting distribution p over ponder steps, else None.
        carry: the recurrent state after the last step, when `forward` was given one to start from.
    """

    logits: torch.Tensor
    steps: torch.Tensor
    ponder_cost: torch.Tensor
    step_logits: torch.Tensor | None = None
    halt_weights: torch.Tensor | None = None
    carry: Any = None


class StepRecord(NamedTuple):
    """Example 0's values at one ponder step, kept when `forward(record=...)` is given a list.

    Every ponder step the batch runs is recorded: under ACT, also those after example 0 halted
    (whose weight is 0); `inspect` replays a batch of one, where the two agree.
    """

    input_step: int  # t, 0-based
    controller_input: torch.Tensor  # (C,)
    read: torch.Tensor | None  # (read_size,) the device's read after this step
    instruction: Instruction | None  # example 0's instruction: op (1, K), operands (1, S_n)
    device_state: Any  # the device state after this step (example 0 only)


class _Carry(NamedTuple):
    """What passes from one ponder step to the next (and, mean-field under ACT, between input steps)."""

    controller: tuple  # the first layer's state: (h, c) LSTM, (h,) GRU, () feed-forward
    read: torch.Tensor  # (B, read_size) the device's last read (B, 0 without one)
    device: Any  # the interface-driven device's state, or ()
    registers: dict  # type -> (B, *shape) the machine's registers (and its devices' states under "devices")
    upper: tuple = ()  # layers 2 … L's states, each like `controller`; () with one layer


class MemoryModel(nn.Module):
    """Controller + device + machine + halting (module docstring).

    Args:
        cfg: the model's configuration.
        input_size: I, the task's input width.
        output_size: O, the task's output width.
    """

    def __init__(self, cfg: ModelConfig, input_size: int, output_size: int):
        super().__init__()
        cfg.validate()
        self.cfg, self.input_size, self.output_size = cfg, input_size, output_size
        factory = MEMORIES[cfg.memory]
        device = factory(cfg) if factory else None
        self.memory = device if device is not None and not cfg.machine_memory else None
        self.machine: Machine | None = None
        if cfg.machine_memory and not device.ops():
            raise ValueError(f"ModelConfig.machine_memory = True: memory {cfg.memory!r} exposes no machine ops; "
                             f"use one of {', '.join(m for m, f in MEMORIES.items() if f and f(cfg).ops())}")
        # the machine reads x_t whole (a Vector[I]) and, when its ops read Scalars, each x_t[i] too
        self.scalar_inputs = False
        if cfg.op_names:
            try:
                opset = OpSet(cfg.op_names)
            except KeyError as e:
                raise ValueError(f"ModelConfig.ops = {cfg.ops!r}: {e.args[0]}") from None
            self.scalar_inputs = any(t == Scalar for t, _ in opset.slots)
            inputs = {"x": Vector[input_size], **({f"x{i}": Scalar for i in range(input_size)}
                                                  if self.scalar_inputs else {})}
            self.machine = Machine(opset, inputs, opset.output_types[0],
                                   devices={MACHINE_DEVICE: device} if cfg.machine_memory else None)
            # the machine's devices are parameters of the model too
            self.machine_devices = nn.ModuleDict(self.machine.devices)
        self.read_size = self.memory.read_size if self.memory is not None else 0
        # the registers the controller and the output see: those some op writes (not the input's)
        self.visible_types = ([t for t in self.machine.types if t in self.machine.opset.output_types]
                              if self.machine else [])
        self.register_size = sum(math.prod(t.shape) for t in self.visible_types)
        self.ponder_flag = cfg.max_ponder > 1
        c = input_size + int(self.ponder_flag) + self.read_size + self.register_size
        h = cfg.hidden
        cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "ff": nn.Linear}[cfg.controller]
        self.cell = cell(c, h)
        # layers 2 … L read the layer below's hidden state (the Learning-to-Execute LSTM has 2)
        self.upper_cells = nn.ModuleList(cell(h, h) for _ in range(cfg.layers - 1))
        if self.memory is not None:
            self.interface_head = nn.Linear(h, self.memory.interface_size)
        if self.machine is not None:
            self.op_head = nn.Linear(h, len(self.machine.opset))
            # operand heads wide enough for the last ponder step's sources; step n uses the first S_n
            self.operand_heads = nn.ModuleList(
                nn.Linear(h, self.machine.num_sources(t, cfg.max_ponder)) for t, _ in self.machine.opset.slots)
        self.output_head = nn.Linear(h + self.read_size + self.register_size, output_size)
        self.halt_head = halting_unit(h) if cfg.halting != "none" else None
        # a plain LSTM runs a whole sequence in one `torch.lstm` call (module docstring)
        self.fused = (cfg.controller == "lstm" and self.memory is None and self.machine is None
                      and cfg.max_ponder == 1)

    # --- state --------------------------------------------------------------------------------
    def initial_carry(self, batch: int, *, device=None, dtype=torch.float32) -> _Carry:
        h = self.cfg.hidden
        zeros = lambda: torch.zeros(batch, h, device=device, dtype=dtype)  # noqa: E731
        layer = lambda: {"lstm": (zeros(), zeros()), "gru": (zeros(),), "ff": ()}[self.cfg.controller]  # noqa: E731
        controller, upper = layer(), tuple(layer() for _ in self.upper_cells)
        read = torch.zeros(batch, self.read_size, device=device, dtype=dtype)
        memory = self.memory.initial_state(batch, device=device, dtype=dtype) if self.memory is not None else ()
        registers = {}
        if self.machine is not None:
            registers = {str(t): t.initial(batch, device=device, dtype=dtype) for t in self.machine.types}
            registers["devices"] = {name: d.initial_state(batch, device=device, dtype=dtype)
                                    for name, d in self.machine.devices.items()}
        return _Carry(controller, read, memory, registers, upper)

    def _layer(self, cell: nn.Module, x: torch.Tensor, state: tuple) -> tuple[tuple, torch.Tensor]:
        """One controller layer: (its new state, its hidden output (B, H))."""
        if self.cfg.controller == "ff":
            return (), torch.tanh(cell(x))
        if self.cfg.controller == "gru":
            hidden = cell(x, state[0])
            return (hidden,), hidden
        state = cell(x, state)
        return state, state[0]

    def _flat_registers(self, carry: _Carry, batch: int, ref: torch.Tensor) -> torch.Tensor:
        if self.machine is None:
            return ref.new_zeros(batch, 0)
        return torch.cat([carry.registers[str(t)].reshape(batch, -1) for t in self.visible_types], dim=1)

    # --- one ponder step ---------------------------------------------------------------------------
    def _ponder_step(self, x: torch.Tensor, n: int, carry: _Carry, machine_state: MachineState | None,
                     hard: bool) -> tuple[torch.Tensor, torch.Tensor | None, _Carry, MachineState | None, dict]:
        """Ponder step n (from 1) of an input step; returns (logits, halt, carry, machine state, extras)."""
        batch, clip = x.shape[0], self.cfg.clip
        parts = [x]
        if self.ponder_flag:
            parts.append(x.new_full((batch, 1), float(n == 1)))  # Graves's first-ponder-step flag δ_{n,1}
        parts += [carry.read, self._flat_registers(carry, batch, x)]
        c_in = torch.cat(parts, dim=1)  # (B, C)
        controller, hidden = self._layer(self.cell, c_in, carry.controller)  # (B, H)
        upper = []
        for cell, state in zip(self.upper_cells, carry.upper):
            state, hidden = self._layer(cell, hidden, state)  # (B, H)
            upper.append(state)
        read, memory = carry.read, carry.device
        if self.memory is not None:
            interface = self.memory.interface_from_raw(self.interface_head(hidden).clamp(-clip, clip))
            if hard:
                interface = self.memory.harden(interface)
            read, memory = self.memory(interface, carry.device)  # (B, read_size)
        registers, instruction = carry.registers, None
        if self.machine is not None:
            instruction = self._instruction(hidden, n, hard)
            machine_state = self.machine.step(instruction, machine_state)
            registers = {str(t): machine_state.register(t) for t in self.machine.types}
            registers["devices"] = dict(machine_state.devices)
        carry = _Carry(controller, read, memory, registers, tuple(upper))
        out_in = torch.cat([hidden, read, self._flat_registers(carry, batch, x)], dim=1)
        logits = self.output_head(out_in).clamp(-clip, clip)  # (B, O)
        halt = None
        if self.halt_head is not None:
            halt = torch.sigmoid(self.halt_head(hidden)).squeeze(1)  # (B,)
            if hard:
                halt = hard_gate(halt)
        extras = {"controller_input": c_in, "instruction": instruction}
        return logits, halt, carry, machine_state, extras

    def _instruction(self, hidden: torch.Tensor, n: int, hard: bool) -> Instruction:
        clip = self.cfg.clip
        pick = hard_choice if hard else (lambda z: torch.softmax(z, dim=-1))
        op = pick(self.op_head(hidden).clamp(-clip, clip))
        operands = tuple(
            pick(head(hidden)[:, : self.machine.num_sources(t, n)].clamp(-clip, clip))  # (B, S_n)
            for head, (t, _) in zip(self.operand_heads, self.machine.opset.slots))
        return Instruction(op, operands)

    def _machine_start(self, x: torch.Tensor, carry: _Carry) -> MachineState | None:
        """The machine before an input step: sources x, constants, and the carried registers as s0."""
        if self.machine is None:
            return None
        inputs = {"x": x, **({f"x{i}": x[:, i] for i in range(x.shape[1])} if self.scalar_inputs else {})}
        state = self.machine.initial_state(inputs, carry.registers["devices"])
        tapes = {t: torch.cat([tape[:, :-1], carry.registers[str(t)].unsqueeze(1)], dim=1)  # (B, S, *shape)
                 for t, tape in state.tapes.items()}
        return MachineState(0, tapes, state.devices)

    def _step_function(self, x: torch.Tensor, t: int, carry: _Carry, hard: bool, record: list | None):
        """Input step t's ponder step as the halting schemes call it: (n, carry) -> (logits, halt, carry)."""
        machine = [self._machine_start(x, carry)]  # the machine state of the last ponder step run

        def step(n: int, carry: _Carry):
            y, halt, carry, machine[0], extras = self._ponder_step(x, n, carry, machine[0], hard)
            if record is not None:
                device = carry.device if self.memory is not None else carry.registers.get("devices")
                record.append(_record(t, extras, carry.read, device))
            return y, halt, carry

        return step

    # --- a whole sequence ----------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, *, mode: str = "train", generator: torch.Generator | None = None,
                record: list | None = None, carry: _Carry | None = None) -> ModelOutput:
        """Run the model over a batch of sequences, or over the next steps of sequences begun earlier.

        Args:
            inputs: (B, T, I) batch first.
            mode: "train" (soft; PonderNet unrolls every ponder step), "eval" (soft; PonderNet
                samples its halting step from `generator`) or "hard" (the discretised model:
                hardened device controls, one-hot instructions, halting at the first unit > ½).
            generator: PonderNet's sampled halting at evaluation.
            record: a list to which every ponder step of example 0 is appended as a `StepRecord`.
            carry: the state to start from, `initial_carry(B)` or an earlier call's `ModelOutput.carry`
                (to run a sequence a few steps at a time, as greedy decoding does); the output then
                holds the state after the last step. None: start afresh, return no state. Each call
                checks its own steps against a stack's capacity (`check_length`): check the whole
                sequence's length first.
        Returns:
            a `ModelOutput`, batch first.
        """
        if inputs.dim() != 3 or inputs.shape[2] != self.input_size:
            raise ValueError(f"model inputs have shape {tuple(inputs.shape)}, expected (B, T, {self.input_size})")
        if mode not in ("train", "eval", "hard"):
            raise ValueError(f"mode must be 'train', 'eval' or 'hard', got {mode!r}")
        batch, steps = inputs.shape[:2]
        self.cfg.check_length(steps)
        keep_carry = carry is not None
        if carry is None:
            carry = self.initial_carry(batch, device=inputs.device, dtype=inputs.dtype)
        halting, cap, hard = self.cfg.halting, self.cfg.max_ponder, mode == "hard"
        if self.fused and record is None:
            logits, carry = self._fused_lstm(inputs, carry)
            return ModelOutput(logits, inputs.new_ones(batch, steps), inputs.new_zeros(batch), None, None,
                               carry if keep_carry else None)
        logits, counts, costs, step_logits, weights = [], [], [], [], []
        for t in range(steps):
            step = self._step_function(inputs[:, t], t, carry, hard, record)
            if halting == "none":
                for n in range(1, cap + 1):
                    y, _, carry = step(n, carry)
                logits.append(y)
                counts.append(inputs.new_full((batch,), float(cap)))
            elif halting == "act" or hard:  # hard: 0/1 halting units, so ACT halts at the first 1
                r = act(step, carry, max_steps=cap, epsilon=self.cfg.act_epsilon)
                logits.append(r.output)
                carry = r.state
                counts.append(r.steps.to(inputs.dtype))
                costs.append(r.ponder_cost)
            elif mode == "eval":
                r = ponder_sample(step, carry, max_steps=cap, generator=generator)
                logits.append(r.output)
                carry = r.state
                counts.append(r.steps.to(inputs.dtype))
            else:
                r = ponder(step, carry, max_steps=cap)
                step_logits.append(r.outputs)
                weights.append(r.weights)
                logits.append((r.weights.unsqueeze(-1) * r.outputs).sum(1))  # (B, O) the expected output
                carry = r.state
                counts.append(r.expected_steps)
        cost = torch.stack(costs, 1).sum(1) if costs else inputs.new_zeros(batch)
        return ModelOutput(
            torch.stack(logits, 1), torch.stack(counts, 1), cost,
            torch.stack(step_logits, 1) if step_logits else None,
            torch.stack(weights, 1) if weights else None, carry if keep_carry else None)

    def _fused_lstm(self, inputs: torch.Tensor, carry: _Carry) -> tuple[torch.Tensor, _Carry]:
        """The whole sequence through the stacked LSTM in one `torch.lstm` call: (logits (B, T, O), carry)."""
        cells = [self.cell, *self.upper_cells]
        states = [carry.controller, *carry.upper]  # (h, c) of each layer, (B, H) each
        weights = [w for cell in cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        h0 = torch.stack([h for h, _ in states])  # (L, B, H)
        c0 = torch.stack([c for _, c in states])  # (L, B, H)
        # arguments: has biases, layers, dropout, train (dropout only), bidirectional, batch first
        hidden, h, c = torch.lstm(inputs, (h0, c0), weights, True, len(cells), 0.0, self.training, False, True)
        logits = self.output_head(hidden).clamp(-self.cfg.clip, self.cfg.clip)  # (B, T, O): no read, no registers
        layers = tuple((h[i], c[i]) for i in range(len(cells)))
        return logits, _Carry(layers[0], carry.read, carry.device, carry.registers, layers[1:])

    def loss(self, task: SequenceTask, batch: Batch, out: ModelOutput) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of a forward pass, and its parts as numbers.

        none: mean over sequences of the task's loss. ACT: + τ · mean Σ_t (N_t + R_t).
        PonderNet: mean Σ_t Σ_n p_t^n L_t(y_t^n) + β · mean Σ_t KL(p_t ‖ geometric(λ_p)).
        """
        if out.step_logits is None:
            task_loss = task.loss(out.logits, batch).mean()
            total = task_loss + self.cfg.ponder_cost * out.ponder_cost.mean()
            return total, {"task_loss": task_loss.item(), "ponder": out.ponder_cost.mean().item()}
        b, t, m, o = out.step_logits.shape
        # every ponder step's logits scored against the same targets: (B·M, T) per-step losses
        per_step = task.step_loss(out.step_logits.transpose(1, 2).reshape(b * m, t, o), _repeat(batch, m))
        per_step = per_step.reshape(b, m, t).transpose(1, 2).reshape(b * t, m)  # (B·T, M)
        total, info = pondernet_loss(per_step, out.halt_weights.reshape(b * t, m), self.cfg.prior, self.cfg.kl_weight)
        total = total * t  # pondernet_loss means over the B·T rows; a sequence's loss sums its steps
        return total, {"task_loss": info["reconstruction"] * t, "kl": info["kl"] * t,
                       "ponder": out.steps.sum(1).mean().item()}


def _repeat(batch: Batch, m: int) -> Batch:
    """Each sequence of the batch m times over, ponder-step major: (M·B, …) as (B, M) reshaped."""
    return Batch(*(x.repeat_interleave(m, dim=0) for x in batch))


def _record(t: int, extras: dict, read: torch.Tensor, device_state: Any) -> StepRecord:
    """Example 0 of a ponder step, detached."""
    first = lambda v: v[0].detach() if isinstance(v, torch.Tensor) else v  # noqa: E731
    instruction = extras["instruction"]
    return StepRecord(t, first(extras["controller_input"]), first(read) if read.shape[1] else None,
                      None if instruction is None else Instruction(
                          instruction.op[:1].detach(), tuple(x[:1].detach() for x in instruction.operands)),
                      torch.utils._pytree.tree_map(first, device_state))
