import numpy as np
import pytest
import torch

from diffvm.controllers.neural_programmer import (
    NeuralProgrammer,
    NeuralProgrammerConfig,
    evaluate_np,
    plot_choices,
    train_neural_programmer,
)
from diffvm.memory.table import OP_NAMES
from diffvm.programs.table_program import program_choices
from diffvm.tasks.table_qa import COMPOSITIONAL_FAMILIES, SINGLE_FAMILIES, TableQA, encode_questions

ALL = SINGLE_FAMILIES + COMPOSITIONAL_FAMILIES


def questions(n, *, rows=5, seed=0, families=ALL):
    cfg = NeuralProgrammerConfig(rows=rows, families=families)
    return TableQA(cfg.task_config()).sample(np.random.default_rng(seed), n)


def small_model(**kw):
    torch.manual_seed(0)
    return NeuralProgrammer(NeuralProgrammerConfig(hidden=16, rows=5, **kw))


def test_forward_shapes_distributions_and_finite_loss():
    model = small_model()
    qs = questions(6)
    batch = encode_questions(qs)
    out = model(batch)
    q = batch.numbers.shape[1]
    assert out.scalar.shape == (6,) and out.lookup.shape == (6, 5, 3)
    assert len(out.choices) == 4 and len(out.registers) == 5
    for c in out.choices:
        assert c.op.shape == (6, len(OP_NAMES)) and c.numbers.shape == (6, 3) and c.words.shape == (6, 1)
        assert c.number.shape == (6, len(OP_NAMES), q) and c.token.shape == batch.tokens.shape
        assert torch.allclose(c.op.sum(-1), torch.ones(6))
        assert torch.all(c.token[~batch.token_mask] == 0)  # padding is never pointed at
        has_number = batch.number_mask.any(-1)
        assert torch.allclose(c.number.sum(-1)[has_number], torch.ones(()))
        assert torch.all(c.number.sum(-1)[~has_number] == 0)  # no numbers: no pivot mass
    loss = model.loss(out, batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_reference_programs_as_one_hot_choices_give_the_answers():
    model = small_model()
    qs = questions(40, seed=3)
    for q in qs:
        batch = encode_questions([q])
        choices = program_choices(q.program, OP_NAMES, q.table, numbers=batch.numbers.shape[1],
                                  tokens=batch.tokens.shape[1], dtype=torch.float32)
        out = model(batch, choices=choices)
        if q.answer_kind == "scalar":
            assert out.scalar.item() == pytest.approx(q.answer.scalar)
        else:
            numeric = q.table.numeric_columns
            cells = {(i, numeric[j]) for i, j in (out.lookup[0] > 0.5).nonzero().tolist()}
            assert cells == set(q.answer.cells)
        assert model.loss(out, batch).item() == pytest.approx(0.0, abs=1e-4)
        assert model.discretise(out, [q]) == [q.program]


def test_loss_is_huber_with_delta_for_scalars_and_weighted_log_loss_for_lookups():
    model = small_model(huber_delta=2.0, lookup_weight=3.0)
    qs = questions(8, seed=1)
    batch = encode_questions(qs)
    out = model(batch)
    err = (out.scalar - batch.scalar).abs()
    huber = torch.where(err <= 2.0, 0.5 * err**2, 2.0 * (err - 1.0))
    p = out.lookup.clamp(1e-6, 1 - 1e-6)
    bce = -(batch.lookup * p.log() + (1 - batch.lookup) * (1 - p).log()).flatten(1).mean(1)
    want = torch.where(batch.is_scalar, huber, 3.0 * bce).mean()
    assert model.loss(out, batch).item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("field, value", [("steps", 0), ("ops", ("sum", "divide")), ("ops", ("sum", "sum")),
                                          ("huber_delta", 0.0), ("gradient_noise", -1.0), ("families", ())])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"NeuralProgrammerConfig.{field}"):
        NeuralProgrammerConfig(**{field: value}).validate()


def test_smoke_training_lowers_the_loss_and_is_seeded():
    cfg = NeuralProgrammerConfig(hidden=16, rows=5, batch=16, updates=60, eval_every=20, eval_questions=16,
                                 lr=3e-3, families=("single_count_all", "single_sum_all", "single_count_greater"),
                                 gradient_noise=0.01)
    model, records = train_neural_programmer(cfg, progress=False)
    assert [r["update"] for r in records] == [20, 40, 60]
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]
    again, records2 = train_neural_programmer(cfg, progress=False)
    assert [r["loss"] for r in records] == [r["loss"] for r in records2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_evaluate_on_larger_tables_and_the_picture(tmp_path):
    model = small_model()
    qs = questions(10, rows=9, seed=2)
    acc = evaluate_np(model, qs)
    assert 0 <= acc["soft"] <= 1 and 0 <= acc["discretised"] <= 1 and acc["questions"] == 10
    out = model(encode_questions(qs[:1]))
    path = tmp_path / "choices.png"
    plot_choices(out, OP_NAMES, qs[0], path)
    assert path.stat().st_size > 1000
