"""diffvm.interp.kernels: fused kernels for the machine's hot loops (DNC temporal linkage, content
addressing, NTM location addressing, the NTM/DNC erase/add write fused with reads, neural
stack/queue steps, the soft step's merge, ACT's accumulation). Each is a plain-PyTorch reference
(the CPU path, the test oracle, the benchmark baseline), a Triton kernel, and a
`torch.library.custom_op` with fake and autograd registrations so that `torch.compile` traces
through it. `impl="auto"` runs Triton on CUDA and the reference elsewhere; `impl="triton"` raises
where Triton cannot run (`diffvm.interp.kernels._dispatch`)."""

from diffvm.interp.kernels._dispatch import IMPLEMENTATIONS
from diffvm.interp.kernels.act import ACTAccumulation, act_accumulate, act_accumulate_reference
from diffvm.interp.kernels.content import NORM_EPS, content_weights, content_weights_reference
from diffvm.interp.kernels.linkage import link_step_reference, linkage_step
from diffvm.interp.kernels.location import location_weights, location_weights_reference
from diffvm.interp.kernels.merge import merge_results, merge_results_reference
from diffvm.interp.kernels.stack import strength_step, strength_step_reference
from diffvm.interp.kernels.write import write_and_read, write_and_read_reference

__all__ = [
    "ACTAccumulation", "IMPLEMENTATIONS", "NORM_EPS", "act_accumulate", "act_accumulate_reference", "content_weights",
    "content_weights_reference", "link_step_reference", "linkage_step", "location_weights",
    "location_weights_reference", "merge_results", "merge_results_reference", "strength_step",
    "strength_step_reference", "write_and_read", "write_and_read_reference",
]
