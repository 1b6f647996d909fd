"""An episode built from every kernel compiles whole (`torch.compile(fullgraph=True)`: the
custom ops' fake and autograd registrations) and gives eager's loss and gradients.

The compile uses the "aot_eager" backend: it traces the graph, runs the ops on fake tensors and
builds the joint forward/backward graph through `register_autograd` as every backend does, but
skips inductor's code generation, which costs ~40 s per compile on this CPU."""

from typing import NamedTuple

import pytest
import torch

from diffvm.interp.kernels import (
    _dispatch,
    act_accumulate,
    content_weights,
    linkage_step,
    location_weights,
    merge_results,
    strength_step,
    write_and_read,
)


class _Linkage(NamedTuple):
    link: torch.Tensor
    precedence: torch.Tensor


def _episode(memory, keys, strengths, masks, values, impl):
    """T steps of: read the last step's words and erase/add-write by content, link, read by content and
    location (an NTM's heads) and along the links (a DNC); push the read word on a neural stack and read
    it back; merge the two reads into a register; ACT's mean field of the register over the steps."""
    batch, slots, width = memory.shape
    steps = keys.shape[0]
    linkage = _Linkage(memory.new_zeros(batch, slots, slots), memory.new_zeros(batch, slots))
    reads = memory.new_zeros(batch, 2, slots)  # (B, R, N)
    stack, stack_values = memory.new_zeros(batch, steps), memory.new_zeros(batch, steps, width)  # (B, C), (B, C, W)
    register = memory.new_zeros(batch, width)
    total = memory.new_zeros(())
    cumulative, remainder = memory.new_zeros(batch), memory.new_zeros(batch)  # ACT's Σ h and R
    running, mean_register = torch.ones(batch, dtype=torch.bool), [torch.zeros_like(register)]
    for t in range(steps):
        write = 0.9 * content_weights(memory, keys[t, :, :1], strengths[t, :, :1], masks[t, :, :1], impl=impl)
        memory, old_words = write_and_read(memory, write, torch.sigmoid(values[t]).unsqueeze(1),
                                           values[t].unsqueeze(1), reads, reads_before_write=True, impl=impl)
        write = write[:, 0]  # (B, N)
        linkage, forward, backward = linkage_step(linkage, write, reads, impl=impl)
        gates = torch.sigmoid(strengths[t])  # (B, 3)
        content = content_weights(memory, keys[t, :, 1:], strengths[t, :, 1:], impl=impl)  # (B, R, N)
        located = location_weights(content, reads, gates[:, 1:], torch.softmax(keys[t, :, :2], -1), 1 + gates[:, 1:],
                                   impl=impl)  # (B, R, N), an NTM's head on the same memory
        reads = (forward + backward + located) / 3
        words = torch.bmm(reads, memory)  # (B, R, W)
        stack_values = stack_values.index_copy(1, torch.tensor([t]), words[:, :1])
        stack, popped = strength_step(stack, stack_values, gates[:, 1], gates[:, 2], t, end="top", impl=impl)
        register = merge_results(0.5 * torch.softmax(words.sum(-1), -1), torch.stack([words[:, 1], popped]),
                                 register, impl=impl)  # (B, W)
        halt = torch.sigmoid(words.sum((1, 2)))  # (B,)
        act = act_accumulate(halt, cumulative, remainder, running, mean_register, [register], last=t == steps - 1,
                             threshold=0.99, impl=impl)
        cumulative, remainder, mean_register = act.cumulative, act.remainder, act.totals
        running = running & ~act.halting
        total = total + words.square().sum() + register.square().sum() + old_words.square().sum()
    return total + mean_register[0].square().sum() + remainder.sum() + act.weight.sum()


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_compiled_episode_matches_eager(impl, monkeypatch):
    monkeypatch.setattr(_dispatch, "POISON_BUFFERS", True)
    gen = torch.Generator().manual_seed(0)
    steps, batch, slots, width = 2, 2, 5, 3
    inputs = [torch.randn(batch, slots, width, generator=gen), torch.randn(steps, batch, 3, width, generator=gen),
              1 + torch.rand(steps, batch, 3, generator=gen), torch.rand(steps, batch, 1, width, generator=gen),
              torch.randn(steps, batch, width, generator=gen)]
    results = {}
    for name, fn in [("eager", _episode), ("compiled", torch.compile(_episode, fullgraph=True, backend="aot_eager"))]:
        leaves = [x.clone().requires_grad_() for x in inputs]
        loss = fn(*leaves, impl)
        loss.backward()
        results[name] = [loss.detach(), *(x.grad for x in leaves)]
    for got, want in zip(results["compiled"], results["eager"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
