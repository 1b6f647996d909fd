"""The Neural Programmer (Neelakantan, Le & Sutskever 2016, §2): a controller that runs T soft
steps of table ops, trained from answers alone.

Letters: B batch, L question tokens, Q question numbers, d the width, K ops, C numeric and V word
columns, R rows, T steps.

- Question RNN (§2.1): a GRU over the question's word embeddings, z_1 … z_L; q = z_L. Numbers
  are read as one token `<num>`; z at a number's position (it has read the words to its left)
  represents that number, the matrix Z of §2.3's pivot attention.
- History RNN (§2.4): h_t = GRU([π_{t−1}ᵀU ; α_{t−1}ᵀP], h_{t−1}), h_0 = 0: what was chosen.
- Selector (§2.2), from x_t = [q ; a_t ; h_t] where a_t is an attention over z_1 … z_L with h_t
  (an addition to the paper's [q ; h_t] that lets each step read its part of a long question):
      π_t = softmax(U·tanh(W^op x_t))                            over the K ops (U: K × d)
      α_t = softmax(P·tanh(W^col x_t))                           over the columns (P: their
                                                                 names' word embeddings)
      β_{t,k} = softmax(Z·tanh(W^ref x_t + V^ref U_k))           over the question numbers,
                                                                 per pivot op (paper: Z·U_k)
      γ_t = softmax(z·tanh(W^tok x_t))                           over the question tokens
                                                                 (word_match's word)
- Soft execution: `diffvm.memory.table.table_step`, T times; the answers are the scalar and
  lookup registers after step T.
- Loss (§2.5): Huber_δ(scalar − y) for scalar answers, λ·mean cell log-loss for lookup answers.
- Training (§3): Adam, gradient clipping, optional gradient noise N(0, η/(1+t)^0.55) added to
  the clipped gradient.

`discretise` hardens every choice to its argmax: a `TableProgram` the hard interpreter runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm import tqdm

from diffvm.controllers.induce import GRADIENT_NOISE_DECAY
from diffvm.memory.table import OP_NAMES, TABLE_OPS, TableChoice, TableRegisters, initial_registers, table_step
from diffvm.programs.table_program import TableAnswer, TableProgram, discretise_choices, run_table_program
from diffvm.tasks.table_qa import (
    SINGLE_FAMILIES,
    TableQA,
    TableQABatch,
    TableQAConfig,
    TableQuestion,
    encode_questions,
    vocabulary,
)

__all__ = ["NeuralProgrammerConfig", "NeuralProgrammer", "NPOutput", "train_neural_programmer", "evaluate_np",
           "save_run", "plot_choices", "answer_correct"]

# Logit given to padding positions (tokens, numbers) before a softmax: exp underflows to 0.
MASKED_LOGIT = -1e9
# Lookup probabilities are clamped to [ε, 1 − ε] inside the log-loss: log 0 would be −∞.
LOG_EPS = 1e-6
# A soft scalar answer counts as right within this distance of the (integer) answer.
SOFT_SCALAR_TOLERANCE = 0.5
# A discretised scalar answer is computed exactly; this only absorbs float round-off.
EXACT_TOLERANCE = 1e-6


@dataclass
class NeuralProgrammerConfig:
    """The model and its training (module docstring). Validated by `validate()`."""

    hidden: int = 64  # d: word embeddings, RNN states, op embeddings
    steps: int = 4  # T, the paper's
    ops: tuple[str, ...] = OP_NAMES  # the ops π ranges over
    huber_delta: float = 10.0  # δ of the scalar answers' Huber loss (paper: tuned by grid search)
    lookup_weight: float = 50.0  # λ of the lookup log-loss (paper: tuned; here 10 left print_max unlearnt)
    lr: float = 1e-3  # Adam
    batch: int = 32  # questions per update
    updates: int = 2000  # optimiser updates
    clip: float = 1.0  # global gradient norm clip
    gradient_noise: float = 0.0  # η of the gradient noise N(0, η/(1+t)^0.55); 0 turns it off
    rows: int = 8  # R of training tables
    numeric_columns: int = 3  # C
    word_columns: int = 1  # V
    families: tuple[str, ...] = SINGLE_FAMILIES  # question families trained on
    eval_every: int = 250  # updates between held-out evaluations (logged)
    eval_questions: int = 256  # held-out questions per evaluation
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes saved with the run

    def validate(self) -> None:
        """Raise `ValueError` naming the field whose value is out of range."""
        checks = {
            "hidden": self.hidden >= 1, "steps": self.steps >= 1,
            "ops": len(self.ops) > 0 and all(o in TABLE_OPS for o in self.ops) and len(set(self.ops)) == len(self.ops),
            "huber_delta": self.huber_delta > 0, "lookup_weight": self.lookup_weight >= 0, "lr": self.lr > 0,
            "batch": self.batch >= 1, "updates": self.updates >= 0, "clip": self.clip > 0,
            "gradient_noise": self.gradient_noise >= 0, "rows": self.rows >= 1,
            "numeric_columns": self.numeric_columns >= 1, "word_columns": self.word_columns >= 0,
            "families": len(self.families) > 0, "eval_every": self.eval_every >= 1,
            "eval_questions": self.eval_questions >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"NeuralProgrammerConfig.{name} = {getattr(self, name)!r} is out of range"
                                 + (f" (ops: {', '.join(OP_NAMES)})" if name == "ops" else ""))
        self.task_config().validate()

    def task_config(self, rows: int | None = None, families: Sequence[str] | None = None) -> TableQAConfig:
        """The generator's config for training (or `rows`/`families` for evaluation)."""
        return TableQAConfig(rows=rows or self.rows, numeric_columns=self.numeric_columns,
                             word_columns=self.word_columns, steps=self.steps,
                             families=tuple(families or self.families))


class NPOutput(NamedTuple):
    """What the model computed for a batch.

    Attributes:
        scalar: (B,) the scalar answer (register after step T).
        lookup: (B, R, C) the lookup answer.
        choices: T `TableChoice`s.
        registers: T + 1 `TableRegisters` (index 0: initial).
    """

    scalar: torch.Tensor
    lookup: torch.Tensor
    choices: list[TableChoice]
    registers: list[TableRegisters]


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension where `mask`; all zero where the mask is all False."""
    p = torch.softmax(logits.masked_fill(~mask, MASKED_LOGIT), dim=-1)
    return p * mask.any(-1, keepdim=True).to(p.dtype)


class NeuralProgrammer(nn.Module):
    """The Neural Programmer (module docstring)."""

    def __init__(self, config: NeuralProgrammerConfig):
        super().__init__()
        config.validate()
        self.config = config
        d, k = config.hidden, len(config.ops)
        self.embed = nn.Embedding(len(vocabulary()), d, padding_idx=0)
        self.question_rnn = nn.GRU(d, d, batch_first=True)
        self.history_rnn = nn.GRUCell(2 * d, d)
        self.op_embed = nn.Parameter(torch.randn(k, d) / math.sqrt(d))  # U
        self.attend = nn.Linear(d, d, bias=False)  # question attention a_t from h_t
        self.w_op = nn.Linear(3 * d, d)
        self.w_col = nn.Linear(3 * d, d)
        self.w_ref = nn.Linear(3 * d, d)
        self.v_ref = nn.Linear(d, d, bias=False)
        self.w_tok = nn.Linear(3 * d, d)

    def forward(self, batch: TableQABatch, *, choices: Sequence[TableChoice] | None = None) -> NPOutput:
        """Run T soft steps on a batch; `choices` (e.g. one-hot) replace the selector's when given."""
        cfg = self.config
        z, _ = self.question_rnn(self.embed(batch.tokens))  # (B, L, d)
        b = z.shape[0]
        last = batch.token_mask.sum(1) - 1  # (B,)
        q = z[torch.arange(b), last]  # (B, d)
        z_num = z.gather(1, batch.number_positions.unsqueeze(-1).expand(-1, -1, z.shape[-1]))  # (B, Q, d)
        p_num = self.embed(batch.column_names)  # (B, C, d)
        p_word = self.embed(batch.word_column_names)  # (B, V, d)
        table = batch.table
        rows, c = table.rows, table.numbers.shape[1]
        history = [initial_registers(b, rows, c, device=z.device, dtype=z.dtype)]
        h = z.new_zeros(b, cfg.hidden)
        made = []
        for t in range(cfg.steps):
            attention = _masked_softmax(torch.einsum("bld,bd->bl", z, self.attend(h)), batch.token_mask)
            x = torch.cat([q, torch.einsum("bl,bld->bd", attention, z), h], dim=-1)  # (B, 3d)
            choice = self._choose(x, z, z_num, p_num, p_word, batch) if choices is None else choices[t]
            history.append(table_step(cfg.ops, choice, table, batch.numbers, batch.tokens, history))
            made.append(choice)
            c_t = torch.cat([choice.op @ self.op_embed, torch.einsum("bc,bcd->bd", choice.numbers, p_num)], -1)
            h = self.history_rnn(c_t, h)  # (B, d)
        return NPOutput(history[-1].scalar, history[-1].lookup, made, history)

    def _choose(self, x, z, z_num, p_num, p_word, batch) -> TableChoice:
        op = torch.softmax(torch.tanh(self.w_op(x)) @ self.op_embed.T, -1)  # (B, K)
        col = torch.tanh(self.w_col(x))  # (B, d)
        numbers = torch.softmax(torch.einsum("bcd,bd->bc", p_num, col), -1)  # (B, C)
        words = torch.softmax(torch.einsum("bvd,bd->bv", p_word, col), -1)  # (B, V)
        query = torch.tanh(self.w_ref(x).unsqueeze(1) + self.v_ref(self.op_embed))  # (B, K, d)
        number = _masked_softmax(torch.einsum("bkd,bqd->bkq", query, z_num),
                                 batch.number_mask.unsqueeze(1).expand(-1, query.shape[1], -1))  # (B, K, Q)
        token = _masked_softmax(torch.einsum("bld,bd->bl", z, torch.tanh(self.w_tok(x))), batch.token_mask)
        return TableChoice(op, numbers, words, number, token)

    def loss(self, out: NPOutput, batch: TableQABatch) -> torch.Tensor:
        """The paper's loss, averaged over the batch: Huber_δ on scalar answers, λ·log-loss on lookups."""
        cfg = self.config
        scalar = F.huber_loss(out.scalar, batch.scalar, reduction="none", delta=cfg.huber_delta)  # (B,)
        p = out.lookup.clamp(LOG_EPS, 1 - LOG_EPS)
        lookup = F.binary_cross_entropy(p, batch.lookup, reduction="none").flatten(1).mean(1)  # (B,)
        return torch.where(batch.is_scalar, scalar, cfg.lookup_weight * lookup).mean()

    def discretise(self, out: NPOutput, questions: Sequence[TableQuestion]) -> list[TableProgram]:
        """Each example's most probable program."""
        return [discretise_choices(out.choices, self.config.ops, qn.table, example=i, numbers=len(qn.numbers),
                                   tokens=len(qn.tokens))
                for i, qn in enumerate(questions)]


# --------------------------------------------------------------------------------------------
# Scoring


def _soft_correct(out: NPOutput, batch: TableQABatch) -> torch.Tensor:
    """(B,) bool: the soft answer of the question's kind is right."""
    scalar_ok = (out.scalar - batch.scalar).abs() < SOFT_SCALAR_TOLERANCE
    lookup_ok = ((out.lookup > 0.5) == (batch.lookup > 0.5)).flatten(1).all(1)
    return torch.where(batch.is_scalar, scalar_ok, lookup_ok)


def answer_correct(got: TableAnswer, question: TableQuestion) -> bool:
    """Whether a hard run's answer is the question's: the scalar (to float round-off) or the cells."""
    if question.answer_kind == "scalar":
        return abs(got.scalar - question.answer.scalar) <= EXACT_TOLERANCE * max(1.0, abs(question.answer.scalar))
    return got.cells == question.answer.cells


def _hard_correct(program: TableProgram, question: TableQuestion) -> bool:
    return answer_correct(run_table_program(program, question.table, question.numbers, question.tokens), question)


@torch.no_grad()
def evaluate_np(model: NeuralProgrammer, questions: Sequence[TableQuestion], *, batch: int = 128) -> dict:
    """Soft and discretised accuracy on `questions` (tables of one shape), overall and per family."""
    model.eval()
    soft, hard, families = [], [], []
    for i in range(0, len(questions), batch):
        chunk = questions[i:i + batch]
        enc = encode_questions(chunk)
        out = model(enc)
        soft += _soft_correct(out, enc).tolist()
        hard += [_hard_correct(p, q) for p, q in zip(model.discretise(out, chunk), chunk)]
        families += [q.family for q in chunk]
    model.train()
    per_family = {f: float(np.mean([h for h, g in zip(hard, families) if g == f])) for f in sorted(set(families))}
    return {"soft": float(np.mean(soft)), "discretised": float(np.mean(hard)), "discretised_per_family": per_family,
            "questions": len(questions)}


# --------------------------------------------------------------------------------------------
# Training


def _add_gradient_noise(model: nn.Module, eta: float, update: int, gen: torch.Generator) -> None:
    # Neelakantan et al. 2016 §3: N(0, η/(1+t)^0.55) added to every gradient
    std = math.sqrt(eta / (1 + update) ** GRADIENT_NOISE_DECAY)
    for p in model.parameters():
        if p.grad is not None:
            p.grad.add_(torch.randn(p.grad.shape, generator=gen, dtype=p.grad.dtype) * std)


def train_neural_programmer(
    config: NeuralProgrammerConfig,
    *,
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
) -> tuple[NeuralProgrammer, list[dict]]:
    """Train a Neural Programmer on freshly drawn questions; same seed, same run.

    Every `eval_every` updates (and at the end) the soft and discretised accuracy on held-out
    questions (drawn from a generator of their own, never used for training) is recorded.

    Returns:
        the model and the records: {"update", "loss", "soft", "discretised", "seconds"}.
    """
    config.validate()
    train_seq, heldout_seq, noise_seq, init_seq = np.random.SeedSequence(config.seed).spawn(4)
    rng = np.random.default_rng(train_seq)
    heldout = TableQA(config.task_config()).sample(np.random.default_rng(heldout_seq), config.eval_questions)
    noise = torch.Generator().manual_seed(int(noise_seq.generate_state(1)[0]))
    with torch.random.fork_rng():  # parameter initialisation from the seed only
        torch.manual_seed(int(init_seq.generate_state(1)[0]))
        model = NeuralProgrammer(config)
    task = TableQA(config.task_config())
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    records, losses, start = [], [], time.perf_counter()
    bar = tqdm(range(config.updates), disable=not progress, desc="neural programmer")
    for update in bar:
        batch = encode_questions(task.sample(rng, config.batch))
        loss = model.loss(model(batch), batch)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        if config.gradient_noise > 0:  # after the clip, which would otherwise shrink the signal with the noise
            _add_gradient_noise(model, config.gradient_noise, update, noise)
        optimiser.step()
        losses.append(loss.item())
        done = update + 1
        if done % config.eval_every == 0 or done == config.updates:
            acc = evaluate_np(model, heldout)
            record = {"update": done, "loss": float(np.mean(losses[-config.eval_every:])), "soft": acc["soft"],
                      "discretised": acc["discretised"], "seconds": time.perf_counter() - start}
            records.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3g}", soft=f"{acc['soft']:.2f}", hard=f"{acc['discretised']:.2f}")
            if log:
                log(record)
    return model, records


def save_run(model: NeuralProgrammer, records: list[dict], path: str | Path) -> None:
    """The config (JSON), the records (JSONL) and the weights (written last, atomically), in folder `path`."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(model.config)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp = out / f".model.pt.{os.getpid()}.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out / "model.pt")  # atomic: a reader sees no weights or whole weights, never half


# --------------------------------------------------------------------------------------------
# The picture


def plot_choices(out: NPOutput, ops: Sequence[str], question: TableQuestion, path: str | Path, *,
                 example: int = 0) -> None:
    """Save one example's op and column probabilities per step as two heat maps (PNG)."""
    pi = np.stack([c.op[example].detach().float().numpy() for c in out.choices], 1)  # (K, T)
    table = question.table
    # α over the numeric columns and α over the word columns are two distributions, stacked
    names = [table.names[j] for j in table.numeric_columns] + [f"{table.names[j]} (words)" for j in table.word_columns]
    alpha = np.stack([np.concatenate([c.numbers[example].detach().float().numpy(),
                                      c.words[example].detach().float().numpy()]) for c in out.choices], 1)
    steps = pi.shape[1]
    fig = Figure(figsize=(6.0, 0.25 * (len(ops) + len(names)) + 1.6))
    axes = fig.subplots(2, 1, gridspec_kw={"height_ratios": [len(ops), max(1, len(names))]})
    panels = ((axes[0], pi, ops, "op π_t"), (axes[1], alpha, names, "column α_t (numeric; words)"))
    for ax, values, labels, title in panels:
        image = ax.imshow(values, aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(labels)), labels, fontsize="small")
        ax.set_xticks(range(steps), [str(t + 1) for t in range(steps)])
        ax.set_title(title, fontsize="small")
        fig.colorbar(image, ax=ax)
    axes[1].set_xlabel("step t")
    fig.suptitle(question.text, fontsize="small")
    fig.savefig(path, dpi=100, bbox_inches="tight")
