"""Tests of `MemoryModel`'s stacked controller (`ModelConfig.layers`) and of running a sequence in
pieces (`forward(..., carry=...)`), which greedy decoding needs.

One layer is the model as it always was (same parameters, same state); L layers equal a plain loop
over the cells; a sequence run a piece at a time, carrying the state, equals it run whole, with
memories and halting; float64 gradcheck; extreme inputs stay finite.
"""

import pytest
import torch

from diffvm.controllers.model import MemoryModel, ModelConfig

DT = torch.float64
IN, OUT = 3, 2


def _model(seed: int = 0, **fields) -> MemoryModel:
    fields = {"hidden": 6, "memory_slots": 12, "memory_width": 3, **fields}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MemoryModel(ModelConfig(**fields), IN, OUT).double()


def _inputs(batch: int, steps: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, steps, IN, generator=g, dtype=DT)


def test_one_layer_is_the_default_and_adds_no_parameters_nor_state():
    assert ModelConfig().layers == 1
    model = _model()
    assert not any(k.startswith("upper_cells") for k in model.state_dict())
    assert model.initial_carry(2).upper == ()


@pytest.mark.parametrize("controller, layers", [("lstm", 2), ("lstm", 3), ("gru", 2), ("ff", 3)])
def test_stacked_layers_equal_a_plain_loop_over_the_cells(controller, layers):
    model = _model(controller=controller, layers=layers)
    x = _inputs(2, 4)
    with torch.no_grad():
        got = model(x).logits  # (B, T, O)
    cells = [model.cell, *model.upper_cells]
    assert len(cells) == layers and all(c.weight_ih.shape[1] == 6 for c in cells[1:] if controller != "ff")
    states = [None] * layers
    for t in range(x.shape[1]):
        h = x[:, t]
        for i, cell in enumerate(cells):  # layer i reads the hidden state of layer i − 1
            if controller == "ff":
                h = torch.tanh(cell(h))
            elif controller == "gru":
                states[i] = h = cell(h, states[i])
            else:
                states[i] = cell(h, states[i])
                h = states[i][0]
        expected = model.output_head(h).clamp(-model.cfg.clip, model.cfg.clip)  # (B, O)
        torch.testing.assert_close(got[:, t], expected)


@pytest.mark.parametrize("fields", [
    {"layers": 2},
    {"layers": 2, "memory": "ntm"},
    {"controller": "gru", "layers": 2, "memory": "dnc"},
    {"memory": "stack", "memory_slots": 21, "halting": "act", "max_ponder": 3},
    {"layers": 2, "ops": "arith::add,arith::sub", "max_ponder": 2},
])
def test_a_sequence_run_in_pieces_carrying_the_state_equals_it_run_whole(fields):
    model = _model(**fields)
    x = _inputs(3, 7, seed=1)
    with torch.no_grad():
        whole = model(x, mode="eval")
        carry = model.initial_carry(3, dtype=DT)
        pieces = []
        for a, b in [(0, 3), (3, 4), (4, 7)]:
            out = model(x[:, a:b], mode="eval", carry=carry)
            carry = out.carry
            pieces.append(out.logits)
    assert whole.carry is None and carry is not None
    torch.testing.assert_close(torch.cat(pieces, 1), whole.logits)


def test_two_layer_lstm_ntm_loss_passes_float64_gradcheck_wrt_inputs():
    model = _model(layers=2, memory="ntm", hidden=4, memory_slots=4, memory_width=2)
    x = _inputs(2, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: model(x).logits.sum(), (x,))


def test_extreme_inputs_give_finite_outputs_and_gradients_with_two_layers():
    model = _model(layers=2, memory="dnc")
    x = _inputs(2, 5, scale=1e6).requires_grad_()
    out = model(x).logits
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_zero_layers_is_refused_by_name():
    with pytest.raises(ValueError, match="ModelConfig.layers = 0: expected ≥ 1"):
        _model(layers=0)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("mode", ["train", "eval", "hard"])
def test_a_plain_lstm_runs_fused_and_equals_the_step_loop_outputs_state_and_gradients(layers, mode):
    """`torch.lstm` over the whole sequence (the fast path) against the ponder-step loop, same weights."""
    fused = _model(layers=layers)
    loop = _model(layers=layers)
    loop.fused = False
    assert fused.fused and fused.state_dict().keys() == loop.state_dict().keys()
    x = _inputs(3, 6, seed=2)
    carry = fused.initial_carry(3, dtype=DT)
    carry = carry._replace(controller=tuple(torch.randn_like(s) for s in carry.controller))  # a mid-sequence state
    outs = [m(x, mode=mode, carry=carry) for m in (fused, loop)]
    torch.testing.assert_close(outs[0].logits, outs[1].logits)
    torch.testing.assert_close(outs[0].steps, outs[1].steps)
    torch.testing.assert_close(outs[0].ponder_cost, outs[1].ponder_cost)
    for a, b in zip((outs[0].carry.controller, *outs[0].carry.upper), (outs[1].carry.controller, *outs[1].carry.upper)):
        torch.testing.assert_close(a, b)
    for out in outs:
        (out.logits ** 2).sum().backward()
    for (name, p), q in zip(fused.named_parameters(), loop.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_the_fused_lstm_is_used_only_without_device_machine_ponder_steps_or_recording():
    assert not any(_model(**f).fused for f in ({"memory": "stack", "memory_slots": 21}, {"controller": "gru"},
                                                {"ops": "arith::add", "max_ponder": 2},
                                                {"halting": "act", "max_ponder": 3}))
    model = _model(layers=2)
    record: list = []
    model(_inputs(1, 4), record=record)  # a recorded run takes the step loop: one record a step
    assert len(record) == 4


def test_fused_lstm_passes_float64_gradcheck_wrt_inputs_and_stays_finite_on_extreme_inputs():
    model = _model(layers=2, hidden=4)
    x = _inputs(2, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: model(x).logits.sum(), (x,))
    big = _inputs(2, 5, scale=1e6).requires_grad_()
    out = model(big).logits
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(big.grad).all()
