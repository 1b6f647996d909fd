"""Devices on the machine: their ops join the OpSet, their state rides in the machine state, and
the hard interpreter runs the same ops on the device's plain state."""

from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from diffvm.interp import Instruction, Machine, OpSet, Scalar
from diffvm.interp.device import Device, DeviceOp, InterfaceField
from diffvm.programs import Program, discretise, run


class Tally(Device):
    """A running total: `add(x)` adds x and returns the new total, `total()` reads it."""

    class Interface(NamedTuple):
        x: torch.Tensor  # (B,)

    class State(NamedTuple):
        total: torch.Tensor  # (B,)

    def interface_fields(self):
        return {"x": InterfaceField((), "identity")}

    @property
    def read_size(self):
        return 1

    def initial_state(self, batch, *, device=None, dtype=None):
        return self.State(torch.zeros(batch, device=device, dtype=dtype))

    def forward(self, interface, state):
        total = state.total + interface.x
        return total.unsqueeze(-1), self.State(total)

    def harden(self, interface):
        return interface

    def ops(self):
        return (DeviceOp("add", (Scalar,), Scalar), DeviceOp("total", (), Scalar))

    def machine_step(self, weights, args, state):
        (x,), () = args
        total = state.total + weights[:, 0] * x  # an add of probability π adds π·x
        return [total, total], self.State(total)

    def plain_initial(self):
        return 0.0

    def plain_apply(self, op, state, *args):
        if op == "add":
            state = state + args[0]
        return state, state


def machine():
    return Machine(OpSet(["arith::mul"]), {"a": Scalar, "b": Scalar}, Scalar, devices={"tally": Tally()})


def one_hot(k, n, batch=2):
    return F.one_hot(torch.full((batch,), k), n).double()


def test_device_ops_join_the_opset_after_the_pure_ops():
    m = machine()
    assert m.opset.names == ("arith::mul", "tally::add", "tally::total")
    assert isinstance(m.opset.ops[1], DeviceOp) and m.opset.ops[1].device == "tally"


def test_device_state_is_threaded_and_results_merged():
    m = machine()
    inputs = {"a": torch.tensor([2.0, 3.0], dtype=torch.float64), "b": torch.tensor([5.0, 7.0], dtype=torch.float64)}
    # slots: (Scalar, 0), (Scalar, 1); sources of Scalar at step t: a, b, s0, …, s_{t-1}
    steps = [
        Instruction(one_hot(1, 3), (one_hot(0, 3), one_hot(0, 3))),  # s1 = tally.add(a)
        Instruction(one_hot(1, 3), (one_hot(1, 4), one_hot(0, 4))),  # s2 = tally.add(b)
        Instruction(one_hot(0, 3), (one_hot(4, 5), one_hot(0, 5))),  # s3 = mul(s2, a)
    ]
    out, state = m.run(steps, inputs)
    assert state.devices["tally"].total.tolist() == [7.0, 10.0]
    assert out.tolist() == [14.0, 30.0]
    program = discretise(m, steps)
    assert [s.op for s in program.steps] == ["tally::add", "tally::add", "arith::mul"]
    assert run(program, {"a": 2.0, "b": 5.0}, devices=m.devices) == 14.0
    again = Program.from_json(program.to_json())
    assert again == program and "device op tally::add(Scalar) -> Scalar" in program.listing()


def test_soft_device_op_weighs_its_effect_by_its_probability():
    m = machine()
    inputs = {"a": torch.tensor([2.0], dtype=torch.float64), "b": torch.tensor([0.0], dtype=torch.float64)}
    pi = torch.tensor([[0.75, 0.25, 0.0]], dtype=torch.float64)
    step = Instruction(pi, (one_hot(0, 3, 1), one_hot(0, 3, 1)))
    _, state = m.run([step], inputs)
    assert state.devices["tally"].total.item() == pytest.approx(0.5)  # a quarter of an add of 2


def test_initial_device_state_can_be_given():
    m = machine()
    inputs = {"a": torch.ones(1), "b": torch.ones(1)}
    state = m.initial_state(inputs, {"tally": Tally.State(torch.tensor([3.0]))})
    assert state.devices["tally"].total.item() == 3.0
    with pytest.raises(ValueError, match="unknown devices"):
        m.initial_state(inputs, {"nope": None})


def test_bad_device_names_and_missing_devices_are_named():
    with pytest.raises(ValueError, match="device name 'Tally'"):
        Machine(OpSet(["arith::mul"]), {"a": Scalar}, Scalar, devices={"Tally": Tally()})
    with pytest.raises(TypeError, match="device 'tally': expected a Device"):
        Machine(OpSet(["arith::mul"]), {"a": Scalar}, Scalar, devices={"tally": object()})
    m = machine()
    steps = [Instruction(one_hot(1, 3, 1), (one_hot(0, 3, 1), one_hot(0, 3, 1)))]
    program = discretise(m, steps)
    with pytest.raises(ValueError, match="uses devices \\['tally'\\]"):
        run(program, {"a": 1.0, "b": 1.0})
