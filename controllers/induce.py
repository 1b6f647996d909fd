"""Program induction from input/output examples alone, with swappable induction strategies.

Gradient descent through the soft machine alone settles in soft optima that do not discretise
(TerpreT; here `(a+b)*c` → `c·mix(a, b)`), so how the controller's distributions are trained is
an option (`InductionConfig.strategy` and the knobs below it):

- "soft": the machine runs the softmax expectation of the instructions; loss = Huber(output,
  target). Knobs: temperature annealing, an entropy term, gradient noise (Neelakantan et al.
  2016: N(0, η/(1+t)^0.55)), straight-through Gumbel-softmax, a curriculum over program depth.
- "reinforce": score-function training (Williams 1992, as Zaremba & Sutskever trained the
  RL-NTM): programs are sampled from the controller, run by the hard interpreter on a few fresh
  inputs, rewarded 1 when every answer is exact, and the log-probability of each is pushed by
  (reward − moving-average baseline), plus an entropy bonus. `reward="graded"` rewards the
  task's partial credit instead (for memory tasks the fraction of scored cells right): a dense
  signal for tasks whose exact reward is rarely hit by chance.

Sampled discretisation (`samples > 0`): besides the controller's most probable program, programs
drawn from it are scored by the hard interpreter on the training check inputs (`samples` of them
at each check; under "reinforce" also every program of an update that was exact on its reward
inputs), and the best one is kept when it beats the greedy program. A solution the policy
samples but does not yet rank first is not lost, and the choice uses training data only.

Restarts run several seeds one after another and keep the first whose discretised program is
exact on training inputs (else the best on them): selection never sees held-out data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from diffvm.controllers.program_controller import ProgramController, StepLogits
from diffvm.interp import Instruction, Machine, OpSet
from diffvm.programs import Program, discretise
from diffvm.tasks import ArithmeticTask
from diffvm.tasks.nram import MemoryTask

__all__ = ["InductionConfig", "InductionResult", "induce", "arithmetic_machine", "evaluate_program", "greedy_program",
           "sample_programs"]

# Gradient clipping (global norm), as is usual for RNN controllers.
CLIP_NORM = 10.0
# Exponent of the Neural Programmer's gradient-noise decay, variance η/(1+t)^GRADIENT_NOISE_DECAY.
GRADIENT_NOISE_DECAY = 0.55
# Training inputs the discretised program must answer exactly for a restart to count as solved.
SOLVED_CHECK_INPUTS = 64


@dataclass
class InductionConfig:
    """How a controller is trained to write a program (module docstring)."""

    strategy: str = "reinforce"  # "reinforce" (sampled programs, hard interpreter) or "soft"
    program_steps: int = 2  # T, instructions per program
    updates: int = 1500  # optimiser updates per restart (at most: solved restarts stop early)
    batch: int = 64  # soft: inputs per update; reinforce: programs sampled per update
    lr: float = 3e-3  # Adam learning rate
    hidden: int = 64  # controller width
    cell: str = "lstm"  # "lstm" or "gru"
    temperature: float = 1.0  # softmax temperature at the first update
    temperature_end: float = 0.0  # if > 0, annealed geometrically to this by the last update
    entropy: float = 0.01  # weight of the entropy bonus on the instruction distributions
    gradient_noise: float = 0.0  # η of the gradient noise; 0 turns it off
    gumbel: bool = False  # soft: straight-through Gumbel-softmax samples instead of expectations
    depth_curriculum: bool = False  # soft: 1 step first, one more each 1/T of the first half
    reward_inputs: int = 4  # reinforce: fresh inputs each sampled program is tested on
    reward: str = "exact"  # reinforce: "exact" (1 if every answer is right, else 0) or "graded" (partial credit)
    samples: int = 0  # programs sampled at each check for sampled discretisation (module docstring); 0: off
    baseline_decay: float = 0.9  # reinforce: moving-average baseline of the reward
    restarts: int = 4  # seeds tried in turn; the first exact on training data is kept
    check_every: int = 25  # updates between checks of the discretised program on training data
    seed: int = 0

    def validate(self) -> None:
        """Raise `ValueError` naming the field whose value is out of range."""
        checks = {
            "strategy": self.strategy in ("reinforce", "soft"),
            "program_steps": self.program_steps >= 1,
            "updates": self.updates >= 1,
            "batch": self.batch >= 1,
            "lr": self.lr > 0,
            "hidden": self.hidden >= 1,
            "temperature": self.temperature > 0,
            "temperature_end": self.temperature_end >= 0,
            "entropy": self.entropy >= 0,
            "gradient_noise": self.gradient_noise >= 0,
            "reward_inputs": self.reward_inputs >= 1,
            "reward": self.reward in ("exact", "graded"),
            "samples": self.samples >= 0,
            "baseline_decay": 0 <= self.baseline_decay < 1,
            "restarts": self.restarts >= 1,
            "check_every": self.check_every >= 1,
            "cell": self.cell in ("lstm", "gru"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"InductionConfig.{name} = {getattr(self, name)!r} is out of range")
        if self.strategy == "reinforce" and (self.gumbel or self.depth_curriculum):
            raise ValueError("InductionConfig.gumbel and .depth_curriculum apply to strategy='soft' only")
        if self.strategy == "soft" and self.reward != "exact":
            raise ValueError("InductionConfig.reward applies to strategy='reinforce' only")


@dataclass
class InductionResult:
    """What `induce` found for one function."""

    function: str
    program: Program
    solved: bool  # exact on the training check inputs
    restart: int  # the restart kept
    updates: int  # updates of that restart
    total_updates: int  # over all restarts tried
    seconds: float
    controller: ProgramController
    machine: Machine
    sampled: bool = False  # the program was drawn from the controller (sampled discretisation), not its argmax


def arithmetic_machine(opset: OpSet | None = None) -> Machine:
    """The machine of the arithmetic family: Scalar inputs a, b, c; a Scalar result."""
    return ArithmeticTask.machine(opset)


def evaluate_program(program: Program, task: ArithmeticTask, inputs: dict, target: np.ndarray) -> float:
    """Fraction of examples the hard interpreter answers exactly."""
    return task.exact(program, (inputs, target))


def _temperature(cfg: InductionConfig, update: int) -> float:
    if cfg.temperature_end <= 0:
        return cfg.temperature
    frac = update / max(1, cfg.updates - 1)
    return cfg.temperature * (cfg.temperature_end / cfg.temperature) ** frac


def _entropy(logits: list[StepLogits], tau: float) -> torch.Tensor:
    """(B,) summed entropy of every op and slot distribution."""
    total = 0
    for step in logits:
        for lg in (step.op, *step.operands):
            logp = F.log_softmax(lg / tau, dim=-1)
            total = total - (logp.exp() * logp).sum(-1)
    return total


def _one_hot_instruction(logits: StepLogits, picks: list[torch.Tensor]) -> Instruction:
    """The instruction choosing `picks` (B,) indices: the op's first, then one per operand slot."""
    hot = [F.one_hot(p, x.shape[-1]).to(x.dtype) for p, x in zip(picks, (logits.op, *logits.operands))]
    return Instruction(hot[0], tuple(hot[1:]))


def _greedy(logits: StepLogits) -> Instruction:
    return _one_hot_instruction(logits, [x.argmax(-1) for x in (logits.op, *logits.operands)])


def greedy_program(controller: ProgramController) -> Program:
    """The controller's most probable program."""
    with torch.no_grad():
        _, trace = controller(lambda t, lg: _greedy(lg))
    return discretise(controller.machine, trace)


def _sample_step(lg: StepLogits, tau: float, gen: torch.Generator) -> list[torch.Tensor]:
    """(B,) indices drawn from a step's distributions at temperature `tau`: the op's, then each slot's."""
    return [torch.multinomial(torch.softmax(x / tau, -1), 1, generator=gen).squeeze(1) for x in (lg.op, *lg.operands)]


def sample_programs(controller: ProgramController, n: int, tau: float, gen: torch.Generator) -> list[Program]:
    """The distinct programs among `n` drawn from the controller at temperature `tau`, in order of first draw."""
    with torch.no_grad():
        _, trace = controller(lambda t, lg: _one_hot_instruction(lg, _sample_step(lg, tau, gen)), batch=n)
    unique: dict = {}  # program steps -> program
    for i in range(n):
        program = discretise(controller.machine, trace, example=i)
        unique.setdefault(program.steps, program)
    return list(unique.values())


def _soft_update(controller, machine, task, cfg, rng, gen, update) -> dict:
    tau = _temperature(cfg, update)
    steps = cfg.program_steps
    if cfg.depth_curriculum:  # one more step each (first half)/T updates
        steps = min(cfg.program_steps, 1 + int(update / (cfg.updates / 2 / cfg.program_steps)))

    def decide(t: int, lg: StepLogits) -> Instruction:
        if not cfg.gumbel:
            return lg.softmax(tau)
        pick = lambda x: F.gumbel_softmax(x, tau=tau, hard=True)  # noqa: E731  (straight-through)
        return Instruction(pick(lg.op), tuple(pick(x) for x in lg.operands))

    with torch.random.fork_rng():  # gumbel_softmax draws from the global generator: seed it
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        logits, trace = controller(decide, steps=steps)
    loss = task.soft_fit(machine, [i.expand(cfg.batch) for i in trace], task.examples(rng, cfg.batch))
    entropy = _entropy(logits, tau).mean()
    return {"loss": loss - cfg.entropy * entropy, "fit": loss.item(), "temperature": tau}


class _Reinforce:
    """Score-function updates over sampled programs; keeps the reward baseline between updates."""

    def __init__(self):
        self.baseline = 0.0

    def update(self, controller, machine, task, cfg, rng, gen, update) -> dict:
        tau = _temperature(cfg, update)
        chosen: list[list[torch.Tensor]] = []

        def decide(t: int, lg: StepLogits) -> Instruction:
            picks = _sample_step(lg, tau, gen)
            chosen.append(picks)
            return _one_hot_instruction(lg, picks)

        logits, trace = controller(decide, batch=cfg.batch)
        # log π(program): the op, and the operands of the slots that op reads
        opset = machine.opset
        reads = torch.tensor([[s in opset.op_slots[k] for s in range(len(opset.slots))]
                              for k in range(len(opset))])  # (K, slots): op k reads slot s
        logp = torch.zeros(cfg.batch)
        for lg, picks in zip(logits, chosen):
            logp = logp + F.log_softmax(lg.op / tau, -1).gather(1, picks[0][:, None]).squeeze(1)
            used = reads[picks[0]]  # (B, slots)
            for s, (x, p) in enumerate(zip(lg.operands, picks[1:])):
                lp = F.log_softmax(x / tau, -1).gather(1, p[:, None]).squeeze(1)
                logp = logp + torch.where(used[:, s], lp, torch.zeros_like(lp))
        examples = task.examples(rng, cfg.reward_inputs)
        score = getattr(task, "partial_credit", task.exact) if cfg.reward == "graded" else task.exact
        rewards, cache, perfect = [], {}, {}
        for i in range(cfg.batch):
            program = discretise(machine, trace, example=i)
            key = program.steps
            if key not in cache:
                cache[key] = score(program, examples)
                if cache[key] == 1.0:  # every answer exact (partial credit is 1 exactly then)
                    perfect[key] = program
            rewards.append(cache[key] if cfg.reward == "graded" else float(cache[key] == 1.0))
        reward = torch.tensor(rewards)
        advantage = reward - self.baseline
        self.baseline = cfg.baseline_decay * self.baseline + (1 - cfg.baseline_decay) * reward.mean().item()
        entropy = _entropy(logits, tau).mean()
        loss = -(advantage * logp).mean() - cfg.entropy * entropy
        return {"loss": loss, "reward": reward.mean().item(), "temperature": tau, "perfect": list(perfect.values())}


def _add_gradient_noise(params, cfg: InductionConfig, update: int, gen: torch.Generator) -> None:
    std = math.sqrt(cfg.gradient_noise / (1 + update) ** GRADIENT_NOISE_DECAY)
    for p in params:
        if p.grad is not None:
            p.grad.add_(torch.randn(p.grad.shape, generator=gen) * std)


def induce(
    task: ArithmeticTask | MemoryTask,
    cfg: InductionConfig,
    *,
    machine: Machine | None = None,
    log: Callable[[dict], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> InductionResult:
    """Train controllers (one per restart) until a discretised program is exact on training data.

    Args:
        task: what to learn: any object with `machine()`, `examples(rng, n)`, `exact(program,
            examples)` (the hard interpreter's fraction right) and `soft_fit(machine,
            instructions, examples)` (a differentiable loss), like `ArithmeticTask` and the
            NRAM-style `MemoryTask`s; optionally `partial_credit(program, examples)`, a score in
            [0, 1] that is 1 exactly when `exact` is (`reward="graded"`; default: `exact`).
        cfg: the strategy and its knobs.
        machine: defaults to `task.machine()`.
        log: called with a metrics record (a JSON-able dict) at every check.
        progress: called with the number of updates just done.
    """
    cfg.validate()
    machine = machine or task.machine()
    start = time.perf_counter()
    best = None  # (train accuracy, restart, updates, program, controller, from samples)
    total = 0
    seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.restarts)
    check_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(cfg.restarts + 1)[-1])
    check = task.examples(check_rng, SOLVED_CHECK_INPUTS)
    for restart, seq in enumerate(seeds):
        rng = np.random.default_rng(seq)
        gen = torch.Generator().manual_seed(int(seq.generate_state(1)[0]))
        with torch.random.fork_rng():  # parameter initialisation from this restart's seed only
            torch.manual_seed(int(seq.generate_state(2)[1]))
            controller = ProgramController(machine, cfg.program_steps, hidden=cfg.hidden, cell=cfg.cell)
        optimiser = torch.optim.Adam(controller.parameters(), lr=cfg.lr)
        step_fn = _Reinforce().update if cfg.strategy == "reinforce" else _soft_update
        accuracy, program, done = 0.0, None, 0
        sampled: tuple[float, Program | None] = (-1.0, None)  # best sampled program: (check accuracy, program)
        checked: dict = {}  # program steps -> accuracy on the check inputs, for sampled programs
        for update in range(cfg.updates):
            metrics = step_fn(controller, machine, task, cfg, rng, gen, update)
            perfect = metrics.pop("perfect", [])  # reinforce: programs exact on their reward inputs
            optimiser.zero_grad()
            metrics.pop("loss").backward()
            if cfg.gradient_noise > 0:
                _add_gradient_noise(controller.parameters(), cfg, update, gen)
            torch.nn.utils.clip_grad_norm_(controller.parameters(), CLIP_NORM)
            optimiser.step()
            done = update + 1
            if progress:
                progress(1)
            checking = done % cfg.check_every == 0 or done == cfg.updates
            if cfg.samples > 0:
                drawn = sample_programs(controller, cfg.samples, metrics["temperature"], gen) if checking else []
                for candidate in [*perfect, *drawn]:
                    if candidate.steps not in checked:
                        checked[candidate.steps] = task.exact(candidate, check)
                    if checked[candidate.steps] > sampled[0]:
                        sampled = (checked[candidate.steps], candidate)
            if checking or sampled[0] == 1.0:
                program = greedy_program(controller)
                accuracy = task.exact(program, check)
                if log:
                    extra = {"sampled_accuracy": sampled[0]} if cfg.samples > 0 else {}
                    log({"function": task.name, "restart": restart, "update": done, "train_accuracy": accuracy,
                         **extra, **metrics, "program": "; ".join(map(str, program.steps))})
                if accuracy == 1.0 or sampled[0] == 1.0:
                    break
        from_samples = sampled[0] > accuracy
        if from_samples:
            accuracy, program = sampled
        total += done
        if best is None or accuracy > best[0]:
            best = (accuracy, restart, done, program, controller, from_samples)
        if accuracy == 1.0:
            break
    accuracy, restart, done, program, controller, from_samples = best
    return InductionResult(task.name, program, accuracy == 1.0, restart, done, total,
                           time.perf_counter() - start, controller, machine, from_samples)
