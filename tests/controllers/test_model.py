"""Tests of `diffvm.controllers.model`: the controller + device + machine + halting model.

Shapes for every memory/controller/halting, the reads fed back to the controller, batch
independence (ACT included), value tests against plain loops, float64 gradchecks, clipping and
extreme inputs, hard mode, the losses, config errors and the machine path.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from diffvm.controllers.model import MEMORIES, MemoryModel, ModelConfig
from diffvm.interp.halting import ACT_HALTING_BIAS, act, geometric_prior
from diffvm.memory import NeuralStack
from diffvm.tasks.algorithmic import Copy, CopyConfig
from diffvm.tasks.base import Batch

DT = torch.float64
IN, OUT = 3, 2  # I and O (the copy task of width 2 has I = 3, O = 2)
# Enough slots for every device: a neural stack's capacity counts ponder steps (T · M ≤ 16 here).
SLOTS = 16
ARITH = "arith::add,arith::sub"


# --- helpers ----------------------------------------------------------------------------------
def _model(seed: int = 0, input_size: int = IN, output_size: int = OUT, **fields) -> MemoryModel:
    """A tiny float64 model; the global RNG (nn.Linear's initialisation) is seeded and restored."""
    fields = {"hidden": 8, "memory_slots": SLOTS, "memory_width": 3, **fields}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MemoryModel(ModelConfig(**fields), input_size, output_size).double()


def _inputs(batch: int, steps: int, size: int = IN, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """(B, T, size) float64 standard normal inputs."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, steps, size, generator=g, dtype=DT)


def _copy_batch(batch: int = 3, seed: int = 0) -> tuple[Copy, Batch]:
    """A copy task of width O = OUT (I = O + 1) and a float64 batch of length-2 episodes (T = 5)."""
    task = Copy(CopyConfig(width=OUT, min_length=2, max_length=2, eval_lengths=""))
    data = task.sample(np.random.default_rng(seed), batch)
    return task, Batch(*(x.double() for x in data))


def _varied_halting(model: MemoryModel, scale: float = 3.0, bias: float = 0.0, seed: int = 1,
                    input_gain: float = 1.0) -> None:
    """Make the halting unit depend strongly on the controller state, so examples halt at different
    steps: random halting weights × `scale`, and the recurrent cell's input weights × `input_gain`
    (a hidden state far from 0 that varies with x_t)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.cell.weight_ih.mul_(input_gain)
        model.halt_head.weight.copy_(scale * torch.randn(model.halt_head.weight.shape, generator=g, dtype=DT))
        model.halt_head.bias.fill_(bias)


def _is_one_hot(x: torch.Tensor) -> bool:
    """Every row (last dimension) holds a single 1 and zeros."""
    return bool(((x == 0) | (x == 1)).all() and (x.sum(-1) == 1).all())


# --- 1. shapes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("halting", ["none", "act", "pondernet"])
@pytest.mark.parametrize("controller", ["lstm", "gru", "ff"])
@pytest.mark.parametrize("memory", list(MEMORIES))
def test_outputs_are_batch_first_for_every_memory_controller_and_halting(memory, controller, halting):
    max_ponder = 1 if halting == "none" else 3
    model = _model(memory=memory, controller=controller, halting=halting, max_ponder=max_ponder)
    b, t = 2, 4
    out = model(_inputs(b, t))
    assert out.logits.shape == (b, t, OUT)
    assert out.steps.shape == (b, t)
    assert out.ponder_cost.shape == (b,)
    if halting == "pondernet":
        assert out.step_logits.shape == (b, t, max_ponder, OUT)
        assert out.halt_weights.shape == (b, t, max_ponder)
        torch.testing.assert_close(out.halt_weights.sum(-1), torch.ones(b, t, dtype=DT))
    else:
        assert out.step_logits is None and out.halt_weights is None
    assert torch.isfinite(out.logits).all()


def test_time_major_or_malformed_inputs_are_rejected_naming_the_expected_shape():
    model = _model(memory="ntm")
    x = _inputs(2, 5)  # (B, T, I) with T ≠ I
    for bad in (x.transpose(1, 2), x.permute(1, 2, 0), x[:, 0], x.unsqueeze(0)):
        with pytest.raises(ValueError, match=rf"expected \(B, T, {IN}\)"):
            model(bad)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        _model()(_inputs(1, 2), mode="soft")


# --- 2. the controller sees the previous step's reads --------------------------------------
@pytest.mark.parametrize("memory", ["ntm", "stack"])
def test_controller_input_holds_x_t_the_first_step_flag_and_the_previous_steps_read(memory):
    model = _model(memory=memory, max_ponder=2)  # halting none: 2 ponder steps per input step
    x = _inputs(2, 3)
    record = []
    model(x, record=record)
    assert len(record) == 3 * 2
    r = model.read_size
    assert r > 0 and record[0].controller_input.shape == (IN + 1 + r,)
    previous = torch.zeros(r, dtype=DT)  # r_0 = 0 before the first step
    for k, rec in enumerate(record):
        t, n = divmod(k, 2)
        assert rec.input_step == t
        c = rec.controller_input
        torch.testing.assert_close(c[:IN], x[0, t], rtol=0, atol=0)
        assert c[IN].item() == float(n == 0)  # Graves's δ_{n,1}
        torch.testing.assert_close(c[IN + 1:], previous, rtol=0, atol=0)
        assert rec.read.shape == (r,)
        previous = rec.read
    # the reads are not all zero, so feeding zeros instead of r_{t−1} would fail above
    assert any(rec.read.abs().max() > 1e-3 for rec in record)


# --- 3. batch independence ----------------------------------------------------------------------
@pytest.mark.parametrize("memory, halting, fields", [
    ("none", "act", {}),
    ("ntm", "act", {}),
    ("stack", "act", {}),
    ("dnc", "pondernet", {}),
    ("stackrnn", "none", {}),
    ("none", "act", {"ops": ARITH}),
    ("stack", "act", {"ops": ARITH, "machine_memory": True, "memory_width": IN}),
], ids=["none-act", "ntm-act", "stack-act", "dnc-pondernet", "stackrnn-none", "machine-act", "machine_stack-act"])
def test_each_example_gets_the_same_outputs_alone_as_in_the_batch(memory, halting, fields):
    max_ponder = 2 if halting == "none" else 4
    model = _model(memory=memory, halting=halting, max_ponder=max_ponder, **fields)
    if halting != "none":
        _varied_halting(model, scale=3.0, bias=-1.0, input_gain=5.0)
    x = _inputs(4, 4)
    out = model(x)
    if halting == "act":
        assert (out.steps != out.steps[:1]).any(), "the examples should halt at different ponder steps"
    for i in range(x.shape[0]):
        alone = model(x[i:i + 1])
        torch.testing.assert_close(alone.logits[0], out.logits[i], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(alone.steps[0], out.steps[i], rtol=0, atol=1e-12)
        torch.testing.assert_close(alone.ponder_cost[0], out.ponder_cost[i], rtol=1e-10, atol=1e-10)


# --- 4. values against plain loops ----------------------------------------------------------------
def test_feed_forward_model_equals_a_plain_loop_over_its_weights():
    model = _model(controller="ff", clip=0.3)
    x = _inputs(2, 3)
    out = model(x)
    W_c, b_c = model.cell.weight, model.cell.bias  # (H, I), (H,)
    W_y, b_y = model.output_head.weight, model.output_head.bias  # (O, H), (O,)
    expected = torch.zeros(2, 3, OUT, dtype=DT)
    for b in range(2):
        for t in range(3):
            h = torch.tanh(W_c @ x[b, t] + b_c)  # [x_t, 0-width read]
            expected[b, t] = (W_y @ h + b_y).clamp(-0.3, 0.3)
    torch.testing.assert_close(out.logits, expected, rtol=1e-12, atol=1e-12)
    assert (expected.abs() == 0.3).any() and (expected.abs() < 0.3).any()  # the clip bites, not everywhere
    assert (out.steps == 1).all() and (out.ponder_cost == 0).all()


def test_lstm_ntm_model_equals_a_step_by_step_loop_over_its_modules():
    model = _model(memory="ntm", heads=2, clip=2.0)
    with torch.no_grad():
        model.interface_head.weight.mul_(20.0)  # so that the clip bites on the interface ξ
    x = _inputs(2, 4)
    out = model(x)
    mem, clip, b = model.memory, model.cfg.clip, x.shape[0]
    h = c = torch.zeros(b, model.cfg.hidden, dtype=DT)
    read = torch.zeros(b, mem.read_size, dtype=DT)
    state = mem.initial_state(b, dtype=DT)
    clipped = False
    for t in range(x.shape[1]):
        h, c = model.cell(torch.cat([x[:, t], read], 1), (h, c))  # the previous step's read r_{t−1}
        raw = model.interface_head(h)  # (B, D)
        clipped |= bool((raw.abs() > clip).any())
        interface = mem.interface_from_raw(raw.clamp(-clip, clip))
        read, state = mem(interface, state)
        y = model.output_head(torch.cat([h, read], 1)).clamp(-clip, clip)  # y_t sees r_t
        torch.testing.assert_close(out.logits[:, t], y, rtol=1e-12, atol=1e-12)
    assert clipped


# --- 5. ACT inside the model -------------------------------------------------------------------
def test_act_model_equals_interp_halting_act_run_by_hand():
    m = 4
    model = _model(halting="act", max_ponder=m, ponder_cost=0.1)
    _varied_halting(model, scale=2.0, bias=-0.5)
    x = _inputs(3, 4)
    out = model(x)

    def step(n, state):  # ponder step n: c = [x_t, δ_{n,1}], no read, no registers
        flag = x.new_full((x.shape[0], 1), float(n == 1))
        h, c = model.cell(torch.cat([xt, flag], 1), state)
        y = model.output_head(h).clamp(-model.cfg.clip, model.cfg.clip)
        return y, torch.sigmoid(model.halt_head(h)).squeeze(1), (h, c)

    h = model.cfg.hidden
    state = (torch.zeros(3, h, dtype=DT), torch.zeros(3, h, dtype=DT))
    cost = torch.zeros(3, dtype=DT)
    for t in range(x.shape[1]):
        xt = x[:, t]
        r = act(step, state, max_steps=m, epsilon=model.cfg.act_epsilon)
        state = r.state
        cost = cost + r.ponder_cost
        torch.testing.assert_close(out.logits[:, t], r.output, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out.steps[:, t], r.steps.to(DT), rtol=0, atol=0)
    torch.testing.assert_close(out.ponder_cost, cost, rtol=1e-12, atol=1e-12)
    assert len(set(out.steps.flatten().tolist())) > 1


def test_act_steps_are_capped_and_the_ponder_cost_exceeds_them():
    m, eps = 3, 0.01
    model = _model(memory="stack", halting="act", max_ponder=m, act_epsilon=eps)
    assert model.halt_head.bias.item() == ACT_HALTING_BIAS == 1.0
    out = model(_inputs(4, 5))
    assert ((out.steps >= 1) & (out.steps <= m)).all()
    assert (out.steps == out.steps.round()).all()
    # ρ_t = N_t + R_t with R_t = 1 − Σ_{n<N} h^n > ε
    assert (out.ponder_cost > out.steps.sum(1) + eps * out.steps.shape[1]).all()
    assert (out.ponder_cost <= out.steps.sum(1) + out.steps.shape[1]).all()


# --- 6. gradients ------------------------------------------------------------------------------
def test_act_stack_loss_passes_float64_gradcheck_wrt_inputs_and_halting_bias():
    task, copy = _copy_batch(batch=2)
    batch = Batch(_inputs(2, 5), copy.targets, copy.mask)  # real-valued inputs: varied halting
    model = _model(memory="stack", halting="act", max_ponder=3, hidden=6, ponder_cost=0.1)
    _varied_halting(model, scale=20.0, bias=-1.0)
    assert len(set(model(batch.inputs).steps.flatten().tolist())) == 3  # N = 1, 2 and 3 all occur

    def loss(inputs, bias):
        out = torch.func.functional_call(model, {"halt_head.bias": bias}, (inputs,))
        return model.loss(task, batch, out)[0]

    x = batch.inputs.clone().requires_grad_(True)
    bias = model.halt_head.bias.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (x, bias), atol=1e-7, rtol=1e-5)


def test_machine_model_loss_passes_float64_gradcheck_wrt_inputs():
    task, batch = _copy_batch(batch=2)
    # a stack of width I driven by the machine: push can read x, so the registers depend on the input
    model = _model(memory="stack", memory_width=IN, ops=ARITH, machine_memory=True, max_ponder=2, hidden=6)
    x = batch.inputs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: model.loss(task, batch, model(x))[0], (x,), atol=1e-7, rtol=1e-5)


# --- 7. clipping and extreme inputs -------------------------------------------------------------
def test_logits_stay_within_the_clip_with_huge_weights():
    model = _model(memory="ntm", clip=5.0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e3)
    out = model(_inputs(3, 4))
    assert out.logits.abs().max() == 5.0  # the clip bites
    assert (out.logits.abs() <= 5.0).all()


@pytest.mark.parametrize("memory", ["ntm", "dnc", "stack"])
def test_extreme_inputs_give_finite_logits_loss_and_gradients(memory):
    task, batch = _copy_batch()
    model = _model(memory=memory, halting="act", max_ponder=3)
    x = (batch.inputs * 1e4).requires_grad_(True)
    out = model(x)
    loss, parts = model.loss(task, batch, out)
    loss.backward()
    assert torch.isfinite(out.logits).all() and torch.isfinite(loss)
    assert all(math.isfinite(v) for v in parts.values())
    assert torch.isfinite(x.grad).all()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


# --- 8. hard mode -----------------------------------------------------------------------------
def test_hard_mode_machine_records_one_hot_instructions():
    model = _model(ops=ARITH, max_ponder=2)
    record = []
    model(_inputs(2, 3), mode="hard", record=record)
    assert len(record) == 6
    for rec in record:
        assert _is_one_hot(rec.instruction.op)
        assert all(_is_one_hot(a) for a in rec.instruction.operands)
    soft = []
    model(_inputs(2, 3), record=soft)
    assert not _is_one_hot(soft[0].instruction.op)


def test_hard_mode_stack_has_zero_one_strengths():
    model = _model(memory="stack", max_ponder=2)
    record = []
    model(_inputs(1, 3), mode="hard", record=record)
    for rec in record:
        s = rec.device_state.strengths
        assert ((s == 0) | (s == 1)).all()


@pytest.mark.parametrize("halting", ["act", "pondernet"])
def test_hard_mode_halts_at_the_first_ponder_step_whose_halting_unit_exceeds_one_half(halting):
    m, steps = 3, 6
    model = _model(halting=halting, max_ponder=m)
    _varied_halting(model, scale=10.0, bias=0.0, seed=1)
    units = []  # the halting unit before its sigmoid at every ponder step run (batch of one)
    model.halt_head.register_forward_hook(lambda mod, args, out: units.append(out[0, 0].item()))
    out = model(_inputs(1, steps), mode="hard")
    assert (out.steps == out.steps.round()).all()
    assert len(set(out.steps.flatten().tolist())) > 1
    pending = iter(units)
    for t in range(steps):
        # σ(z) > 1/2 ⇔ z > 0; the cap M halts anyway
        first = next((n for n in range(1, m + 1) if next(pending) > 0), m)
        assert out.steps[0, t].item() == first
    assert next(pending, None) is None  # no ponder step ran beyond the halting one


def test_pondernet_eval_mode_samples_the_same_steps_for_the_same_seed():
    model = _model(halting="pondernet", max_ponder=4)
    x = _inputs(5, 4)
    a = model(x, mode="eval", generator=torch.Generator().manual_seed(3))
    b = model(x, mode="eval", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.steps, b.steps, rtol=0, atol=0)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    assert (a.steps == a.steps.round()).all() and a.step_logits is None


# --- 9. the loss ------------------------------------------------------------------------------
def test_loss_without_halting_is_the_tasks_mean_loss():
    task, batch = _copy_batch()
    model = _model(memory="ntm")
    out = model(batch.inputs)
    total, parts = model.loss(task, batch, out)
    expected = task.loss(out.logits, batch).mean()
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=0)
    assert parts["task_loss"] == pytest.approx(expected.item())


def test_act_loss_adds_tau_times_the_ponder_cost():
    task, batch = _copy_batch()
    model = _model(halting="act", max_ponder=3, ponder_cost=0.5)
    out = model(batch.inputs)
    total, parts = model.loss(task, batch, out)
    assert (out.ponder_cost > 0).all()
    expected = task.loss(out.logits, batch).mean() + 0.5 * out.ponder_cost.mean()
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=0)
    assert parts["ponder"] == pytest.approx(out.ponder_cost.mean().item())


def test_pondernet_loss_equals_a_plain_loop_over_steps_and_ponder_steps():
    task, batch = _copy_batch()
    m, beta, lambda_p = 3, 0.5, 0.3
    model = _model(memory="ntm", halting="pondernet", max_ponder=m, kl_weight=beta, prior=lambda_p)
    out = model(batch.inputs)
    total, _ = model.loss(task, batch, out)
    prior = geometric_prior(lambda_p, m, dtype=DT)
    # L_t(y_t^n) for every ponder step n: (B, T) each
    losses = [task.step_loss(out.step_logits[:, :, n], batch) for n in range(m)]
    b_size, t_size = batch.inputs.shape[:2]
    expected = 0.0
    for b in range(b_size):
        for t in range(t_size):
            for n in range(m):
                p = out.halt_weights[b, t, n].item()
                expected += p * losses[n][b, t].item() + beta * p * math.log(p / prior[n].item())
    expected /= b_size
    assert total.item() == pytest.approx(expected, rel=1e-10)


# --- 10. configuration errors -----------------------------------------------------------------
@pytest.mark.parametrize("fields, field", [
    ({"controller": "transformer"}, "controller"),
    ({"memory": "tape"}, "memory"),
    ({"halting": "act", "max_ponder": 1}, "max_ponder"),
    ({"halting": "pondernet", "max_ponder": 1}, "max_ponder"),
    ({"memory": "stack", "machine_memory": True}, "machine_memory"),
    ({"ops": ARITH, "machine_memory": True}, "machine_memory"),
    ({"clip": 0.0}, "clip"),
    ({"memory": "ntm", "link_top_k": 8}, "link_top_k"),
    ({"memory": "dnc", "link_top_k": -1}, "link_top_k"),
])
def test_config_errors_name_the_field(fields, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}\b"):
        ModelConfig(**fields).validate()
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}\b"):
        MemoryModel(ModelConfig(**fields), IN, OUT)


def test_link_top_k_gives_the_dnc_sparse_links():
    from diffvm.memory import SparseLinkageState

    model = MemoryModel(ModelConfig(memory="dnc", memory_slots=12, memory_width=4, link_top_k=3), IN, OUT)
    state = model.memory.initial_state(2)
    assert isinstance(state.linkage, SparseLinkageState) and state.linkage.index.shape == (2, 12, 3)
    out = model(torch.randn(2, 5, IN))
    assert torch.isfinite(out.logits).all()


def test_machine_memory_with_a_memory_without_machine_ops_is_rejected_at_construction():
    with pytest.raises(ValueError, match="machine_memory"):
        _model(memory="dnc", ops=ARITH, machine_memory=True)


# --- 11. the machine path -----------------------------------------------------------------------
def test_machine_model_runs_and_feeds_its_registers_to_the_controller_and_output():
    model = _model(ops=ARITH, max_ponder=2)
    assert model.register_size == 1  # the Scalar register
    assert model.cell.input_size == IN + 1 + model.register_size  # [x_t, δ_{n,1}, registers]
    assert model.output_head.in_features == model.cfg.hidden + model.register_size
    out = model(_inputs(2, 3))
    assert out.logits.shape == (2, 3, OUT) and torch.isfinite(out.logits).all()


def test_machine_memory_stack_adds_device_ops_and_is_driven_by_the_machine():
    model = _model(memory="stack", ops="arith::add", machine_memory=True)
    names = [op.name for op in model.machine.opset]
    assert "memory::push" in names and "memory::pop" in names
    assert model.memory is None and model.read_size == 0  # no interface-driven device
    assert isinstance(model.machine_devices["memory"], NeuralStack)
    record = []
    out = model(_inputs(2, 3), record=record)
    assert out.logits.shape == (2, 3, OUT)
    strengths = [rec.device_state["memory"].strengths for rec in record]
    assert strengths[-1].sum() > 0  # the machine pushed


def _act_weights(halts: list[torch.Tensor], steps: torch.Tensor) -> torch.Tensor:
    """ACT's p^n from the halting probabilities h^n (B,) of the ponder steps run and each example's
    N (B,): p^n = h^n for n < N, R = 1 − Σ_{n<N} h^n at n = N, 0 after. Returns (B, n_run)."""
    p = torch.zeros(steps.shape[0], len(halts), dtype=DT)
    for b in range(steps.shape[0]):
        cum = 0.0
        for n, h in enumerate(halts, start=1):
            if n < steps[b]:
                p[b, n - 1] = h[b]
            elif n == steps[b]:
                p[b, n - 1] = 1.0 - cum
            cum += h[b].item()
    return p


def _mean_field(p: torch.Tensor, values: list[torch.Tensor]) -> torch.Tensor:
    """Σ_n p^n · values[n] per example: p (B, n_run), each value (B, *shape)."""
    return sum(p[:, n].reshape(-1, *[1] * (v.dim() - 1)) * v for n, v in enumerate(values))


@pytest.mark.parametrize("halting, max_ponder", [("none", 1), ("none", 2), ("act", 3)])
def test_registers_carry_across_input_steps_as_the_machines_s0(monkeypatch, halting, max_ponder):
    # a machine-driven stack of width I: push reads x, so the Vector[I] register is not all zeros
    model = _model(memory="stack", memory_width=IN, ops=ARITH, machine_memory=True,
                   halting=halting, max_ponder=max_ponder)
    halts = []  # ACT's h^n (B,) of every ponder step run
    if halting == "act":
        _varied_halting(model, scale=3.0, bias=-1.0, input_gain=5.0)
        model.halt_head.register_forward_hook(lambda mod, args, out: halts.append(torch.sigmoid(out[:, 0]).detach()))
    calls = []  # (state before, state after) of every machine step
    step = model.machine.step

    def spy(instruction, state):
        new = step(instruction, state)
        calls.append((state, new))
        return new

    monkeypatch.setattr(model.machine, "step", spy)
    batch, steps = 4, 4
    record = []
    out = model(_inputs(batch, steps), record=record)
    if halting == "act":
        assert (out.steps != out.steps[:1]).any()
    # ponder steps run per input step: until every example halted (max_ponder without halting)
    runs = out.steps.amax(0).long().tolist()
    assert len(calls) == len(record) == sum(runs)
    start, flat, carried = 0, [], {}
    for t in range(steps):
        if t > 0:
            before, _ = calls[start]  # the first ponder step of input step t
            for vt in model.machine.types:
                s0 = before.tapes[vt][:, len(model.machine.fixed_sources(vt))]  # (B, *shape)
                torch.testing.assert_close(s0, carried[vt], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(before.devices["memory"].strengths, carried["strengths"],
                                       rtol=1e-12, atol=1e-12)
            # the controller sees the same registers: the tail of c at the first ponder step of t
            registers = torch.cat([carried[vt][0].reshape(-1) for vt in model.visible_types])
            flat.append(registers)
            torch.testing.assert_close(record[start].controller_input[-model.register_size:], registers,
                                       rtol=1e-12, atol=1e-12)
        group = [after for _, after in calls[start:start + runs[t]]]
        if halting == "act":  # the mean field Σ_n p^n register^n
            p = _act_weights(halts[start:start + runs[t]], out.steps[:, t])
        else:  # the last ponder step's
            p = torch.zeros(batch, runs[t], dtype=DT)
            p[:, -1] = 1.0
        carried = {vt: _mean_field(p, [a.register(vt) for a in group]) for vt in model.machine.types}
        carried["strengths"] = _mean_field(p, [a.devices["memory"].strengths for a in group])
        start += runs[t]
    assert torch.stack(flat).abs().max() > 1e-3  # the carried registers are not trivially zero


def test_arith_machine_registers_depend_on_the_input():
    model = _model(ops=ARITH, max_ponder=2)
    record = []
    model(_inputs(2, 3), record=record)
    scalar = torch.stack([rec.controller_input[-model.register_size:] for rec in record])
    assert scalar.abs().max() > 0


def test_feed_forward_controller_has_no_recurrent_state():
    model = _model(controller="ff")
    assert isinstance(model.cell, nn.Linear)
    assert model.initial_carry(2).controller == ()


def test_a_stack_too_small_for_the_sequence_is_named_before_it_overflows():
    model = _model(memory="stack", memory_slots=5, max_ponder=2)
    with pytest.raises(ValueError, match=r"ModelConfig.memory_slots = 5: .* 3 input steps × max_ponder 2 need 6"):
        model(_inputs(2, 3))
