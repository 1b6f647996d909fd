"""The machine's invariant as a reusable check: one-hot instructions make the soft machine (pure
ops and devices alike) equal the hard interpreter, step by step."""

import torch
from hypothesis import strategies as st

from diffvm.interp import Instruction, Machine
from diffvm.interp.device import DeviceOp
from diffvm.programs import Program, Step, discretise, run_trace


def draw_one_hot_program(data: st.DataObject, machine: Machine, steps: int):
    """Draw `steps` random one-hot instructions; return them with the program they spell."""
    opset = machine.opset
    trace, program_steps = [], []
    for t in range(1, steps + 1):
        k = data.draw(st.integers(0, len(opset) - 1), label=f"op {t}")
        picks = [data.draw(st.integers(0, machine.num_sources(ty, t) - 1)) for ty, _ in opset.slots]
        one_hot = lambda i, n: torch.nn.functional.one_hot(torch.tensor([i]), n).double()  # noqa: E731
        trace.append(Instruction(one_hot(k, len(opset)), tuple(
            one_hot(p, machine.num_sources(ty, t)) for p, (ty, _) in zip(picks, opset.slots))))
        args = tuple(machine.sources(opset.slots[s][0], t)[picks[s]] for s in opset.op_slots[k])
        program_steps.append(Step(opset.ops[k].name, args))
    used = {s.op for s in program_steps}
    device_ops = tuple(o for o in opset if isinstance(o, DeviceOp) and o.name in used)
    program = Program(machine.inputs, machine.output, program_steps, machine.constants, device_ops)
    return trace, program


def assert_soft_equals_hard(machine: Machine, trace, program: Program, plain_inputs, *,
                            device_states=None, plain_device_states=None):
    """Run the soft machine on the one-hot `trace` (float64, batch of one, hardened after each step)
    and the hard interpreter on `program`; every register the program touches must agree at every
    step, and the discretised trace must compute the same."""
    hard = run_trace(program, plain_inputs, devices=machine.devices, device_states=plain_device_states)
    inputs = {n: t.from_plain(plain_inputs[n]).unsqueeze(0) for n, t in machine.inputs.items()}
    state = machine.initial_state(inputs, device_states)
    for t, instruction in enumerate(trace, start=1):
        state = machine.harden(machine.step(instruction, state))  # each step from the hard state
        for ty in hard[t]:  # the types the program touches
            soft_value = ty.to_plain(state.register(ty)[0])
            assert ty.plain_close(soft_value, hard[t][ty]), (
                f"step {t} register {ty}: soft {soft_value!r} != hard {hard[t][ty]!r}\n{program.listing()}")
    canonical = discretise(machine, trace)
    again = run_trace(canonical, plain_inputs, devices=machine.devices, device_states=plain_device_states)
    assert again[-1] == hard[-1]
    return state
